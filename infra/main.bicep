// Delegated Admin Monitor: everything a partner needs in their own subscription, for `azd up`.
// Composes the local modules in ./modules (self-contained, so checkov and a Bicep parser can
// check all of it). Names are derived from one resource token, so a redeployment of the same
// azd environment updates the same resources.
targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------
// azd
// ---------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names the resource group and seeds the resource token.')
param environmentName string

@minLength(1)
@description('Azure region for every resource. Must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the user running azd (AZURE_PRINCIPAL_ID); gets the Relationships.Read app role so the first sign-in works. Empty: nobody.')
param principalId string = ''

@description('E-mail address of the partner admin (or distribution list) that receives the Azure Monitor alerts.')
param partnerAdminEmail string

// ---------------------------------------------------------------------------------------------
// Microsoft endpoints and credentials
// ---------------------------------------------------------------------------------------------

@description('PARTNER_TENANT_ID: the partner tenant. Empty: the tenant being deployed to, which is the partner tenant.')
param partnerTenantId string = ''

@description('GRAPH_BASE_URL: Microsoft Graph root, without a version.')
param graphBaseUrl string = 'https://graph.microsoft.com'

@description('PARTNER_CENTER_BASE_URL: Partner Center REST root.')
param partnerCenterBaseUrl string = 'https://api.partnercenter.microsoft.com'

@description('CUSTOMER_ADMIN_BASE_URL: Partner Center CustomerServiceAdminApi root (delegatedAdminCustomers).')
param customerAdminBaseUrl string = 'https://traf-pcsvcadmin-prod.trafficmanager.net/CustomerServiceAdminApi/Web'

@description('RESOURCE_MANAGER_BASE_URL: Azure Resource Manager root (Azure role assignments in customer tenants).')
param resourceManagerBaseUrl string = 'https://management.azure.com'

@description('DAP_ENABLED: read and remove legacy DAP through Partner Center (needs the App+User credentials below).')
param dapEnabled bool = true

@description('PARTNER_CENTER_APP_ID: the Partner Center App+User application (DAP).')
param partnerCenterAppId string = ''

@secure()
@description('PARTNER_CENTER_APP_SECRET, stored in Key Vault. Empty: keep what the vault holds.')
param partnerCenterAppSecret string = ''

@secure()
@description('PARTNER_CENTER_REFRESH_TOKEN, stored in Key Vault. Empty: keep what the vault holds.')
param partnerCenterRefreshToken string = ''

// ---------------------------------------------------------------------------------------------
// Schedules (NCRONTAB, referenced as %SETTING% by the timer functions)
// ---------------------------------------------------------------------------------------------

@description('RELATIONSHIP_SYNC_SCHEDULE: when relationships are synced.')
param relationshipSyncSchedule string = '0 0 * * * *'

@description('SIGNIN_INGEST_SCHEDULE: when sign-ins are ingested.')
param signinIngestSchedule string = '0 */15 * * * *'

@description('EVALUATION_SCHEDULE: when the policy is evaluated (UTC).')
param evaluationSchedule string = '0 30 6 * * *'

// ---------------------------------------------------------------------------------------------
// Ingestion and policy (README, Configuration)
// ---------------------------------------------------------------------------------------------

@description('SIGNIN_BACKFILL_DAYS: how far back the first ingestion reads; never more than the tenant\'s sign-in log retention.')
@minValue(1)
@maxValue(3650)
param signinBackfillDays int = 30

@description('SIGNIN_OVERLAP_MINUTES: each ingestion re-reads this much before its checkpoint (late logs).')
@minValue(0)
@maxValue(10080)
param signinOverlapMinutes int = 120

@description('SIGNIN_SLICE_HOURS: ingestion reads the log in slices of this many hours (a divisor of 24).')
@allowed([
  1
  2
  3
  4
  6
  8
  12
  24
])
param signinSliceHours int = 24

@description('SIGNIN_PACE: sign-in log requests started per window (N/Ts); Graph allows 5 per 10 s per app per tenant.')
param signinPace string = '5/10s'

@description('SIGNIN_LOG_LATENCY_MINUTES: how late Entra may write a sign-in; removals are checked only this long after their decision.')
@minValue(0)
@maxValue(1440)
param signinLogLatencyMinutes int = 15

@description('Resource id of the storage account Entra\'s diagnostic settings archive the sign-in logs to (SIGNIN_ARCHIVE_CONNECTION is its blob endpoint); empty: no archive. The app\'s identity gets Storage Blob Data Reader on it.')
param signinArchiveAccountId string = ''

@description('SIGNIN_ARCHIVE_CONTAINERS: the archive\'s containers, one per sign-in category.')
param signinArchiveContainers string = 'insights-logs-signinlogs,insights-logs-noninteractiveusersigninlogs'

@description('SIGNIN_ARCHIVE_QUIET_HOURS: hours a container may lack a blob between blobs close by while another container has the hour\'s blob; 0: none.')
@minValue(0)
@maxValue(168)
param signinArchiveQuietHours int = 0

@description('SIGNIN_SOURCE: graph (the Graph sign-in log) or archive (ongoing ingestion from the archive; needs signinArchiveAccountId).')
@allowed([
  'graph'
  'archive'
])
param signinSource string = 'graph'

@description('HOST_CLOCK_MAX_SKEW_MINUTES: ingestion refuses to run when the host clock and Microsoft\'s disagree by more than this.')
@minValue(1)
param hostClockMaxSkewMinutes int = 5

@description('RETRY_DELAY_MS: base delay between retries of a failed Microsoft request that names no Retry-After.')
@minValue(0)
@maxValue(600000)
param retryDelayMs int = 3000

@description('GDAP_POLL_SECONDS: wait between polls of a GDAP long-running operation that names no Retry-After.')
@minValue(0)
@maxValue(3600)
param gdapPollSeconds int = 10

@description('POLICY_MODE: report never removes anything automatically; enforce removes candidates.')
@allowed([
  'report'
  'enforce'
])
param policyMode string = 'report'

@description('RECOMMEND_AFTER_DAYS: recommend removal after this many days without activity.')
@minValue(1)
@maxValue(3650)
param recommendAfterDays int = 60

@description('REMOVE_AFTER_DAYS: removal candidate after this many days without activity.')
@minValue(1)
@maxValue(3650)
param removeAfterDays int = 90

@description('WARN_DAYS_BEFORE_REMOVAL: warn this many days before a customer becomes a candidate.')
@minValue(0)
@maxValue(365)
param warnDaysBeforeRemoval int = 14

@description('REMOVAL_SCOPE: comma-separated relationship types removal touches (dap, gdap; azure also deletes the Azure role assignments of the partner).')
@allowed([
  'dap,gdap'
  'gdap,dap'
  'dap'
  'gdap'
  'dap,gdap,azure'
  'dap,azure'
  'gdap,azure'
])
param removalScope string = 'dap,gdap'

@description('MAX_REMOVALS_PER_RUN: circuit breaker; a run with more candidates removes none.')
@minValue(0)
@maxValue(100000)
param maxRemovalsPerRun int = 25

@description('EXCLUDED_TENANTS: comma-separated customer tenant ids never removed automatically.')
param excludedTenants string = ''

@description('INGESTION_STALE_HOURS: no enforcement when the last successful ingestion is older than this; also the window of the stale-ingestion alert (at most 48 hours).')
@minValue(1)
@maxValue(8760)
param ingestionStaleHours int = 6

@description('EVALUATION_SHARD_THRESHOLD: the evaluation fans out to one evaluation-shards message per customer shard when the previous evaluation had at least this many customers (0: always).')
@minValue(0)
@maxValue(10000000)
param evaluationShardThreshold int = 20000

// ---------------------------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------------------------

@description('NOTIFY_SENDER: mailbox that sends the mail through Graph (restrict Mail.Send to it, docs/deploy.md).')
param notifySender string = ''

@description('NOTIFY_PARTNER_ADDRESSES: comma-separated partner admin addresses for warnings, digests and alerts.')
param notifyPartnerAddresses string = ''

@description('RESELLER_DIGEST_CONTACTS: optional, indirect providers: <reseller tenant id>=a@x;b@x, ... gets the digest of its own customers.')
param resellerDigestContacts string = ''

@description('NOTIFY_CUSTOMERS: e-mail the customer\'s contacts after a removal.')
param notifyCustomers bool = true

@description('NOTIFY_CUSTOMERS_BEFORE_REMOVAL: also warn customers ahead of removal.')
param notifyCustomersBeforeRemoval bool = false

@description('NOTIFY_PARTNER_LANGUAGE: language of the partner admins\' mail (customers get theirs from the billing-profile culture).')
@allowed([
  'en'
  'ja'
])
param notifyPartnerLanguage string = 'en'

@secure()
@description('ALERT_WEBHOOK_URL: a webhook that also receives the partner admins\' alerts, warnings and digests (its URL is its credential), stored in Key Vault. Empty: keep what the vault holds.')
param alertWebhookUrl string = ''

@description('Whether ALERT_WEBHOOK_URL references the vault\'s webhook secret. Set it once the secret is there (given as alertWebhookUrl now or earlier); false: no webhook.')
param alertWebhookEnabled bool = false

@description('ALERT_WEBHOOK_FORMAT: json (the product\'s own event document) or teams (an Adaptive Card for a Teams Workflows webhook).')
@allowed([
  'json'
  'teams'
])
param alertWebhookFormat string = 'json'

@description('PORTAL_URL: the portal address webhook messages link to; empty: the function app\'s host name.')
param portalUrl string = ''

// ---------------------------------------------------------------------------------------------
// GDAP
// ---------------------------------------------------------------------------------------------

@description('GDAP_GROUP_ADMINAGENTS: partner security group id the GDAP templates\' AdminAgents group stands for; empty: looked up in Graph by display name.')
param gdapGroupAdminAgents string = ''

@description('GDAP_GROUP_HELPDESKAGENTS: partner security group id for the templates\' HelpdeskAgents group; empty: looked up in Graph by display name.')
param gdapGroupHelpdeskAgents string = ''

@description('AGENT_INACTIVE_DAYS: a partner agent with group membership and no sign-in into any customer for this many days is flagged idle.')
@minValue(1)
@maxValue(3650)
param agentInactiveDays int = 90

@description('AGENT_REMOVAL_MODE: off (idle agents are only flagged) or enforce (each evaluation removes them from their groups).')
@allowed([
  'off'
  'enforce'
])
param agentRemovalMode string = 'off'

// ---------------------------------------------------------------------------------------------
// Entra ID
// ---------------------------------------------------------------------------------------------

@description('Grant Microsoft Graph Mail.Send (application), which allows sending as every mailbox of the tenant, to the mail identity. Default false: the mail identity gets the Exchange Online role "Application Mail.Send" scoped to NOTIFY_SENDER instead (tools/restrict-mail-send.ps1, docs/deploy.md), which must not be combined with the Entra grant.')
param grantMailSend bool = false

@description('Create the Partner Customer Delegated Administration service principal (appId 2832473f-ec63-45fb-976f-5d45a7d4bb91) if the tenant lacks it.')
param provisionPartnerCustomerDelegatedAdministration bool = true

// ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'delegated-admin-monitor'
}
var functionAppName = 'func-dam-${resourceToken}'

// shared.platform.settings.QUEUES and, for each, the poison queue the Functions host moves a message to
// after its last failed attempt. tests/test_infra.py keeps this list in step with the code.
var queueNames = [
  'removals'
  'removals-poison'
  'notifications'
  'notifications-poison'
  'evaluation-shards'
  'evaluation-shards-poison'
  'audit-runs'
  'audit-runs-poison'
  'webhooks'
  'webhooks-poison'
]

// Every setting of shared.platform.settings.Settings that the partner chooses, with the class's defaults.
// The platform-derived ones (AzureWebJobsStorage__*, AZURE_CLIENT_ID, the Key Vault references)
// are added in modules/functionapp.bicep.
// The archive account, named by its resource id: /subscriptions/{sub}/resourceGroups/{rg}/providers/
// Microsoft.Storage/storageAccounts/{name}. Without one, the parts point at this deployment (unused).
var signinArchiveParts = split(empty(signinArchiveAccountId) ? '/subscriptions/${subscription().subscriptionId}/resourceGroups/rg-${environmentName}/providers/Microsoft.Storage/storageAccounts/none' : signinArchiveAccountId, '/')
var signinArchiveBlobEndpoint = empty(signinArchiveAccountId) ? '' : 'https://${signinArchiveParts[8]}.blob.${environment().suffixes.storage}'

var appSettings = {
  PARTNER_TENANT_ID: empty(partnerTenantId) ? tenant().tenantId : partnerTenantId
  GRAPH_BASE_URL: graphBaseUrl
  PARTNER_CENTER_BASE_URL: partnerCenterBaseUrl
  CUSTOMER_ADMIN_BASE_URL: customerAdminBaseUrl
  RESOURCE_MANAGER_BASE_URL: resourceManagerBaseUrl
  PARTNER_CENTER_APP_ID: partnerCenterAppId
  DAP_ENABLED: dapEnabled ? 'true' : 'false'
  RELATIONSHIP_SYNC_SCHEDULE: relationshipSyncSchedule
  SIGNIN_INGEST_SCHEDULE: signinIngestSchedule
  EVALUATION_SCHEDULE: evaluationSchedule
  SIGNIN_BACKFILL_DAYS: string(signinBackfillDays)
  SIGNIN_OVERLAP_MINUTES: string(signinOverlapMinutes)
  SIGNIN_SLICE_HOURS: string(signinSliceHours)
  SIGNIN_PACE: signinPace
  SIGNIN_LOG_LATENCY_MINUTES: string(signinLogLatencyMinutes)
  SIGNIN_ARCHIVE_CONNECTION: signinArchiveBlobEndpoint
  SIGNIN_ARCHIVE_CONTAINERS: signinArchiveContainers
  SIGNIN_ARCHIVE_QUIET_HOURS: string(signinArchiveQuietHours)
  SIGNIN_SOURCE: signinSource
  RETRY_DELAY_MS: string(retryDelayMs)
  HOST_CLOCK_MAX_SKEW_MINUTES: string(hostClockMaxSkewMinutes)
  GDAP_POLL_SECONDS: string(gdapPollSeconds)
  POLICY_MODE: policyMode
  RECOMMEND_AFTER_DAYS: string(recommendAfterDays)
  REMOVE_AFTER_DAYS: string(removeAfterDays)
  WARN_DAYS_BEFORE_REMOVAL: string(warnDaysBeforeRemoval)
  REMOVAL_SCOPE: removalScope
  MAX_REMOVALS_PER_RUN: string(maxRemovalsPerRun)
  EXCLUDED_TENANTS: excludedTenants
  INGESTION_STALE_HOURS: string(ingestionStaleHours)
  EVALUATION_SHARD_THRESHOLD: string(evaluationShardThreshold)
  NOTIFY_SENDER: notifySender
  NOTIFY_PARTNER_ADDRESSES: notifyPartnerAddresses
  RESELLER_DIGEST_CONTACTS: resellerDigestContacts
  NOTIFY_CUSTOMERS: notifyCustomers ? 'true' : 'false'
  NOTIFY_CUSTOMERS_BEFORE_REMOVAL: notifyCustomersBeforeRemoval ? 'true' : 'false'
  NOTIFY_PARTNER_LANGUAGE: notifyPartnerLanguage
  ALERT_WEBHOOK_FORMAT: alertWebhookFormat
  PORTAL_URL: portalUrl
  GDAP_GROUP_ADMINAGENTS: gdapGroupAdminAgents
  GDAP_GROUP_HELPDESKAGENTS: gdapGroupHelpdeskAgents
  AGENT_INACTIVE_DAYS: string(agentInactiveDays)
  AGENT_REMOVAL_MODE: agentRemovalMode
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-dam-${resourceToken}'
    location: location
    tags: tags
  }
}

// The GDAP writes (terminate, requests, access assignments) and the mail go out as identities of
// their own, so a job that only reads cannot write and only the sender can send (docs/deploy.md).
module writerIdentity 'modules/identity.bicep' = {
  name: 'identity-gdap-writer'
  scope: rg
  params: {
    name: 'id-dam-${resourceToken}-gdap-writer'
    location: location
    tags: tags
  }
}

module mailIdentity 'modules/identity.bicep' = {
  name: 'identity-mail'
  scope: rg
  params: {
    name: 'id-dam-${resourceToken}-mail'
    location: location
    tags: tags
  }
}

module network 'modules/network.bicep' = {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-dam-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-dam-${resourceToken}'
    applicationInsightsName: 'appi-dam-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stdam${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package'
    queueNames: queueNames
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneIds: network.outputs.privateDnsZoneIds
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-dam-${resourceToken}'
    location: location
    tags: tags
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneId: network.outputs.privateDnsZoneIds.vault
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
    partnerCenterAppSecret: partnerCenterAppSecret
    partnerCenterRefreshToken: partnerCenterRefreshToken
    alertWebhookUrl: alertWebhookUrl
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    refreshTokenSecretName: dapEnabled ? keyVault.outputs.refreshTokenName : ''
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-dam-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    writerIdentityId: writerIdentity.outputs.id
    writerIdentityClientId: writerIdentity.outputs.clientId
    mailIdentityId: mailIdentity.outputs.id
    mailIdentityClientId: mailIdentity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: 'app-package'
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
    appSubnetId: network.outputs.appSubnetId
    keyVaultName: keyVault.outputs.name
    keyVaultSecretNames: {
      appSecret: keyVault.outputs.appSecretName
      refreshToken: keyVault.outputs.refreshTokenName
      alertWebhookUrl: keyVault.outputs.alertWebhookUrlName
    }
    partnerCenterSecretsFromKeyVault: dapEnabled
    alertWebhookFromKeyVault: alertWebhookEnabled || !empty(alertWebhookUrl)
    signinArchiveBlobEndpoint: signinArchiveBlobEndpoint
    signinArchiveTrigger: signinSource == 'archive'
    appSettings: appSettings
  }
  // The host must be able to reach its storage the moment it starts.
  dependsOn: [
    rbac
  ]
}

module entra 'modules/entra.bicep' = {
  name: 'entra'
  scope: rg
  params: {
    appUniqueName: 'delegated-admin-monitor-${resourceToken}'
    appDisplayName: 'Delegated Admin Monitor (${environmentName})'
    functionAppHostName: functionApp.outputs.defaultHostName
    identityPrincipalId: identity.outputs.principalId
    writerPrincipalId: writerIdentity.outputs.principalId
    mailPrincipalId: mailIdentity.outputs.principalId
    readerPrincipalId: principalId
    grantMailSend: grantMailSend
    provisionPartnerCustomerDelegatedAdministration: provisionPartnerCustomerDelegatedAdministration
  }
}

module auth 'modules/auth.bicep' = {
  name: 'auth'
  scope: rg
  params: {
    functionAppName: functionApp.outputs.name
    clientId: entra.outputs.clientId
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: 'dam-${resourceToken}'
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    partnerAdminEmail: partnerAdminEmail
    ingestionStaleHours: min(ingestionStaleHours, 48)
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output GDAP_WRITER_IDENTITY_CLIENT_ID string = writerIdentity.outputs.clientId
output MAIL_IDENTITY_CLIENT_ID string = mailIdentity.outputs.clientId
output MAIL_IDENTITY_PRINCIPAL_ID string = mailIdentity.outputs.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output ENTRA_APP_CLIENT_ID string = entra.outputs.clientId
output ENTRA_APP_OBJECT_ID string = entra.outputs.applicationObjectId

// Read access to the sign-in archive, where the partner keeps it (another resource group or subscription).
module signinArchiveAccess 'modules/archive-access.bicep' = if (!empty(signinArchiveAccountId)) {
  name: 'signin-archive-access'
  scope: resourceGroup(signinArchiveParts[2], signinArchiveParts[4])
  params: {
    accountName: signinArchiveParts[8]
    principalId: identity.outputs.principalId
  }
}
