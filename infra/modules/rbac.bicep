// Every Azure role assignment of the deployment, in one place. Names are
// guid(scope, principal, role), so re-deploying is idempotent and a reviewer can see at a glance
// what the function app's identity may touch: data roles only, no Owner/Contributor anywhere.

@description('Principal (object) id of the function app\'s user-assigned managed identity.')
param principalId string

@description('Storage account of the app.')
param storageAccountName string

@description('Application Insights component the app reports to.')
param applicationInsightsName string

@description('Key Vault holding the Partner Center secrets.')
param keyVaultName string

@description('Secret holding the Partner Center refresh token; the app writes each rotated token to it. Empty: DAP is off, no write access.')
param refreshTokenSecretName string = ''

var roles = {
  // Functions host: blob leases, timer schedules, keys; Flex Consumption deployment container.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Queue triggers (read/delete/poison) and the app enqueueing removals and notifications.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // Relationships, sign-ins, evaluations, removals tables.
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // Entra-authenticated telemetry ingestion (local auth is disabled).
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  // Key Vault references for the Partner Center secrets (read only).
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  // The rotated Partner Center refresh token written back as a new version: on that one secret only.
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
  }
}

resource refreshTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = if (!empty(refreshTokenSecretName)) {
  parent: vault
  name: refreshTokenSecretName
}

// Scoped to the refresh-token secret (Key Vault RBAC accepts a single secret as scope), so the app can
// write that one secret and no other. The secret must exist: the first DAP deployment writes it.
resource refreshTokenWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(refreshTokenSecretName)) {
  name: guid(refreshTokenSecret.id, principalId, roles.keyVaultSecretsOfficer)
  scope: refreshTokenSecret
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
  }
}
