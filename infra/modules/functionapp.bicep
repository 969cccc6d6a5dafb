// The Flex Consumption plan and the Python 3.11 function app. The app runs as its user-assigned
// managed identity for host storage (AzureWebJobsStorage__* identity connection), the deployment
// package container, Application Insights ingestion, Key Vault references and the Microsoft Graph
// reads (AZURE_CLIENT_ID for DefaultAzureCredential); the GDAP writes go out as the writer identity
// (GRAPH_WRITE_CLIENT_ID) and mail as the mail identity (MAIL_CLIENT_ID).

@description('Function app name (also the default host name prefix).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region. Must offer Flex Consumption.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

@description('Resource id of the identity that makes the GDAP writes.')
param writerIdentityId string

@description('Client id of the identity that makes the GDAP writes.')
param writerIdentityClientId string

@description('Resource id of the identity that sends mail.')
param mailIdentityId string

@description('Client id of the identity that sends mail.')
param mailIdentityClientId string

@description('Storage account used by the host, the queues and tables, and the deployment package.')
param storageAccountName string

@description('Blob container Flex Consumption deploys the package to.')
param deploymentContainerName string

@description('Application Insights component the app reports to.')
param applicationInsightsName string

@description('Log Analytics workspace for the platform logs of the app.')
param logAnalyticsWorkspaceId string

@description('Subnet delegated to Microsoft.App/environments for outbound VNet integration.')
param appSubnetId string

@description('Key Vault holding the Partner Center App+User secrets.')
param keyVaultName string

@description('Secret names in that vault: { appSecret, refreshToken }.')
param keyVaultSecretNames object

@description('Whether PARTNER_CENTER_APP_SECRET / PARTNER_CENTER_REFRESH_TOKEN reference the vault (DAP enabled) or stay empty.')
param partnerCenterSecretsFromKeyVault bool

@description('Whether ALERT_WEBHOOK_URL references the vault\'s webhook secret or stays empty (no webhook).')
param alertWebhookFromKeyVault bool

@description('The product\'s settings (name -> string value), one per entry of shared.platform.settings.Settings that is not provided by the platform here.')
param appSettings object

@description('Blob endpoint of the Entra sign-in archive (empty: none): the connection SIGNIN_ARCHIVE of the archive blob triggers.')
param signinArchiveBlobEndpoint string = ''

@description('Whether the archive blob triggers run (SIGNIN_SOURCE=archive); otherwise they are disabled.')
param signinArchiveTrigger bool = false

@description('Upper bound of instances Flex Consumption may scale out to (40 is the smallest the plan accepts).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// Version-less references: a new secret version is picked up without a redeployment.
var appSecretReference = '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${keyVaultSecretNames.appSecret})'
var alertWebhookReference = '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${keyVaultSecretNames.alertWebhookUrl})'
var refreshTokenReference = '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${keyVaultSecretNames.refreshToken})'

// Settings that come from the platform resources rather than from the partner's choices.
// AzureWebJobsStorage itself (a connection string) is deliberately absent: shared keys are off.
var platformSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  AZURE_CLIENT_ID: identityClientId
  GRAPH_WRITE_CLIENT_ID: writerIdentityClientId
  MAIL_CLIENT_ID: mailIdentityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  PARTNER_CENTER_APP_SECRET: partnerCenterSecretsFromKeyVault ? appSecretReference : ''
  PARTNER_CENTER_REFRESH_TOKEN: partnerCenterSecretsFromKeyVault ? refreshTokenReference : ''
  ALERT_WEBHOOK_URL: alertWebhookFromKeyVault ? alertWebhookReference : ''
  // The same secret by its URI: the app reads its newest version on start and writes every rotated token.
  PARTNER_CENTER_REFRESH_TOKEN_SECRET_URI: partnerCenterSecretsFromKeyVault ? '${vault.properties.vaultUri}secrets/${keyVaultSecretNames.refreshToken}' : ''
  // App Service Authentication signs users in with the app registration, using the managed
  // identity as a federated credential instead of a client secret (modules/entra.bicep).
  OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID: identityClientId
  WEBSITE_AUTH_AAD_ALLOWED_TENANTS: tenant().tenantId
  // The archive's blob-created triggers (functions/ingestion.py): identity-based connection SIGNIN_ARCHIVE,
  // disabled unless ongoing ingestion reads the archive (they would find no connection otherwise).
  SIGNIN_ARCHIVE__blobServiceUri: empty(signinArchiveBlobEndpoint) ? 'https://none.invalid' : signinArchiveBlobEndpoint
  SIGNIN_ARCHIVE__credential: 'managedidentity'
  SIGNIN_ARCHIVE__clientId: identityClientId
  'AzureWebJobs.signin_archive_signinlogs.Disabled': signinArchiveTrigger ? 'false' : 'true'
  'AzureWebJobs.signin_archive_noninteractiveusersigninlogs.Disabled': signinArchiveTrigger ? 'false' : 'true'
}

var allSettings = union(appSettings, platformSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
  // checkov:skip=CKV_AZURE_225:Zone redundancy for Flex Consumption exists only in some regions and needs always-ready instances; this back-office app runs on timers and queues and catches up on its next run after a zonal outage.
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:The partner's admins reach the portal and API from their browsers; Entra ID sign-in (App Service Authentication) and the app roles Relationships.Read/Remove guard every route.
  // checkov:skip=CKV_AZURE_17:Users authenticate with Microsoft Entra ID through App Service Authentication; requiring client certificates would lock out browsers.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales instances per function on demand; a fixed worker count (numberOfWorkers) does not apply to the plan.
  // checkov:skip=CKV_AZURE_213:App Service health check is not available on Flex Consumption; failures surface through the Application Insights alerts in modules/alerts.bicep.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
      '${writerIdentityId}': {}
      '${mailIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: appSubnetId
    // The portal and the API are used from the partner admins' browsers; App Service
    // Authentication (modules/auth.bicep) and the app roles guard them.
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      appSettings: [for setting in items(allSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No basic-auth publishing: azd deploys with an Entra token.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: functionApp
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

output id string = functionApp.id
output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
output uri string = 'https://${functionApp.properties.defaultHostName}'
