// Key Vault for the Partner Center App+User credentials (legacy DAP reads and removals).
// RBAC only, purge protection, no public network access: the function app reads it through its
// private endpoint, and the secrets are written by this deployment through Azure Resource Manager,
// which the vault firewall does not apply to. Nobody needs to reach the vault's data plane from
// outside the virtual network.

@description('Key Vault name (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Days a deleted vault or secret stays recoverable. Short, so that the name is free again soon after "azd down"; purge protection still forbids an early purge.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 7

@description('Subnet for the private endpoint.')
param privateEndpointSubnetId string

@description('Private DNS zone id of privatelink.vaultcore.')
param privateDnsZoneId string

@description('Log Analytics workspace that receives the vault audit log.')
param logAnalyticsWorkspaceId string

@secure()
@description('Partner Center App+User application secret. Empty: the secret is left as it is (or not created).')
param partnerCenterAppSecret string = ''

@secure()
@description('Partner Center App+User refresh token. Empty: the secret is left as it is (or not created).')
param partnerCenterRefreshToken string = ''

@secure()
@description('ALERT_WEBHOOK_URL (the URL is the webhook\'s credential). Empty: the secret is left as it is (or not created).')
param alertWebhookUrl string = ''

@description('Secret names, as referenced from the app settings.')
param secretNames object = {
  appSecret: 'partner-center-app-secret'
  refreshToken: 'partner-center-refresh-token'
  alertWebhookUrl: 'alert-webhook-url'
}

@description('Days until the webhook secret expires (a Workflows webhook URL has no expiry of its own; the date prompts a review).')
param alertWebhookValidityDays int = 730

@description('Days until the application secret expires (set it to the secret\'s real lifetime in Partner Center).')
param appSecretValidityDays int = 365

@description('Timestamp the expiries are counted from. Leave the default.')
param writtenAt string = utcNow()

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      ipRules: []
      virtualNetworkRules: []
    }
  }
}

resource privateEndpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = {
  name: '${name}-pe'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: '${name}-vault'
        properties: {
          privateLinkServiceId: vault.id
          groupIds: [
            'vault'
          ]
        }
      }
    ]
  }
}

resource privateDnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = {
  parent: privateEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'vault'
        properties: {
          privateDnsZoneId: privateDnsZoneId
        }
      }
    ]
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

// Written only when a value is given, so a later "azd provision" without the values keeps the
// secrets already in the vault. The secret resources live in their own module because a
// conditional resource would hide its properties from the static checks.
module appSecret 'keyvault-secret.bicep' = if (!empty(partnerCenterAppSecret)) {
  name: 'secret-partner-center-app-secret'
  params: {
    vaultName: vault.name
    name: secretNames.appSecret
    value: partnerCenterAppSecret
    expiresOn: dateTimeToEpoch(dateTimeAdd(writtenAt, 'P${appSecretValidityDays}D'))
  }
}

// Partner Center refresh tokens expire after 90 days.
module refreshToken 'keyvault-secret.bicep' = if (!empty(partnerCenterRefreshToken)) {
  name: 'secret-partner-center-refresh-token'
  params: {
    vaultName: vault.name
    name: secretNames.refreshToken
    value: partnerCenterRefreshToken
    expiresOn: dateTimeToEpoch(dateTimeAdd(writtenAt, 'P90D'))
  }
}

module alertWebhook 'keyvault-secret.bicep' = if (!empty(alertWebhookUrl)) {
  name: 'secret-alert-webhook-url'
  params: {
    vaultName: vault.name
    name: secretNames.alertWebhookUrl
    value: alertWebhookUrl
    expiresOn: dateTimeToEpoch(dateTimeAdd(writtenAt, 'P${alertWebhookValidityDays}D'))
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
output appSecretName string = secretNames.appSecret
output refreshTokenName string = secretNames.refreshToken
output alertWebhookUrlName string = secretNames.alertWebhookUrl
