// Microsoft Entra ID objects, deployed with the Microsoft Graph Bicep extension (bicepconfig.json
// pins its version). This is the only file that uses the extension; checkov and the pycep parser
// pinned by checkov predate the "extension" keyword, so tests/test_infra.py parses this file with
// that one declaration blanked out, and checkov (which has no checks for Microsoft.Graph types)
// lists it as its one parsing error. See docs/deploy.md, "What the deployment does in Entra ID".
//
// The deploying user needs, in the partner tenant: Application Administrator (or
// Application.ReadWrite.All) for the app registration, and Privileged Role Administrator (or
// AppRoleAssignment.ReadWrite.All) to grant Microsoft Graph application permissions.
extension microsoftGraphV1

@description('Immutable unique name of the app registration (also its display name suffix).')
param appUniqueName string

@description('Display name of the app registration users sign in to.')
param appDisplayName string

@description('Default host name of the function app, for the sign-in redirect URI.')
param functionAppHostName string

@description('Principal (object) id of the function app\'s managed identity (the Graph reads).')
param identityPrincipalId string

@description('Principal id of the identity that makes the GDAP writes.')
param writerPrincipalId string

@description('Principal id of the identity that sends mail.')
param mailPrincipalId string

@description('Object id of a user or group to give Relationships.Read right away (azd passes the deploying user). Empty: nobody.')
param readerPrincipalId string = ''

@description('Grant Microsoft Graph Mail.Send (application: every mailbox of the tenant) to the mail identity. Default false: tools/restrict-mail-send.ps1 gives it the Exchange Online role "Application Mail.Send" scoped to the sender mailbox (RBAC for Applications), which must not be combined with this grant.')
param grantMailSend bool = false

@description('Create the "Partner Customer Delegated Administration" service principal in the partner tenant if it is missing (needed for app-only GDAP calls).')
param provisionPartnerCustomerDelegatedAdministration bool = true

// Well-known ids: Microsoft Graph and its application permissions (app roles), and the
// first-party app GDAP app-only calls require in the partner tenant.
var graphAppId = '00000003-0000-0000-c000-000000000000'
var partnerCustomerDelegatedAdministrationAppId = '2832473f-ec63-45fb-976f-5d45a7d4bb91'
var graphUserReadScope = 'e1fe6dd8-ba31-4d61-89e7-88639da4683d'
// Each is the least privileged application permission Microsoft documents for what the app calls,
// and each identity holds only what its jobs call:
// - the app's own identity (reads): AuditLog.Read.All for GET /auditLogs/signIns;
//   DelegatedAdminRelationship.Read.All for the GDAP reads (relationships, requests, operations, access
//   assignments: https://learn.microsoft.com/graph/api/delegatedadminrelationship-get lists it as least
//   privileged); Directory.Read.All for GET /contracts (https://learn.microsoft.com/graph/api/contract-list:
//   "Application: Directory.Read.All" is the least privileged, nothing narrower exists), which also covers
//   GET /organization and the groups' transitiveMembers, so GroupMember.Read.All and
//   Organization.Read.All would add nothing while the contracts are read;
// - the GDAP writer: DelegatedAdminRelationship.ReadWrite.All (terminate, requests, access assignments,
//   PATCH) and GroupMember.ReadWrite.All (removing an idle agent from a partner group: DELETE
//   /groups/{id}/members/{id}/$ref, https://learn.microsoft.com/graph/api/group-delete-members lists it as
//   least privileged), nothing else;
// - the mail identity: no Graph permission by default (Exchange Online RBAC for Applications scopes
//   "Application Mail.Send" to the sender mailbox); Mail.Send only when grantMailSend.
var graphAppRoles = {
  'AuditLog.Read.All': 'b0afded3-3588-46d8-8b3d-9842eff778da'
  'Directory.Read.All': '7ab1d382-f21e-4acd-a863-ba3e13f7da61'
  'DelegatedAdminRelationship.Read.All': 'f6e9e124-4586-492f-adc0-c6f96e4823fd'
  'DelegatedAdminRelationship.ReadWrite.All': 'cc13eba4-8cd8-44c6-b4d4-f93237adce58'
  'Mail.Send': 'b633e1c5-b582-4048-a93e-9f11b44c7e96'
  'GroupMember.ReadWrite.All': 'dbaae8cf-10b5-4b86-a4a1-f871c94c6695'
}
var grantedGraphRoles = concat([
  {
    principalId: identityPrincipalId
    appRoleId: graphAppRoles['AuditLog.Read.All']
  }
  {
    principalId: identityPrincipalId
    appRoleId: graphAppRoles['Directory.Read.All']
  }
  {
    principalId: identityPrincipalId
    appRoleId: graphAppRoles['DelegatedAdminRelationship.Read.All']
  }
  {
    principalId: writerPrincipalId
    appRoleId: graphAppRoles['DelegatedAdminRelationship.ReadWrite.All']
  }
  {
    principalId: writerPrincipalId
    appRoleId: graphAppRoles['GroupMember.ReadWrite.All']
  }
], grantMailSend ? [
  {
    principalId: mailPrincipalId
    appRoleId: graphAppRoles['Mail.Send']
  }
] : [])

// The product's app roles (docs/definitions.md section 6). Fixed ids: they must not change between
// deployments, or every assignment would be orphaned.
var relationshipsReadRoleId = '4f6d1c8e-2a55-4c2b-9e0e-6a3d6f1b7c01'
var relationshipsRemoveRoleId = '9b2e7a44-53c1-4f0d-8d6a-1c5e2f8a9d02'
var relationshipsGrantRoleId = '4f1c6d2b-7e83-4a5f-9b10-3d6e8a2c7f15'

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: appUniqueName
  displayName: appDisplayName
  signInAudience: 'AzureADMyOrg'
  appRoles: [
    {
      id: relationshipsReadRoleId
      value: 'Relationships.Read'
      displayName: 'Relationships.Read'
      description: 'View the delegated admin monitor: portal, audit report, customers and removal history.'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
    {
      id: relationshipsRemoveRoleId
      value: 'Relationships.Remove'
      displayName: 'Relationships.Remove'
      description: 'Everything Relationships.Read allows, and request the removal of DAP/GDAP relationships and reductions of access (Global Administrator, unused access assignments).'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
    {
      id: relationshipsGrantRoleId
      value: 'Relationships.Grant'
      displayName: 'Relationships.Grant'
      description: 'Everything Relationships.Read allows, and grant or prolong access: GDAP requests and invitations, re-establishment, auto-extend.'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
  ]
  api: {
    requestedAccessTokenVersion: 2
  }
  web: {
    redirectUris: [
      'https://${functionAppHostName}/.auth/login/aad/callback'
    ]
    implicitGrantSettings: {
      enableIdTokenIssuance: true
      enableAccessTokenIssuance: false
    }
  }
  requiredResourceAccess: [
    {
      resourceAppId: graphAppId
      resourceAccess: [
        {
          id: graphUserReadScope
          type: 'Scope'
        }
      ]
    }
  ]
}

// App Service Authentication proves the app's identity with the managed identity instead of a
// client secret (OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID): no secret to store or rotate.
resource managedIdentityCredential 'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' = {
  name: '${app.uniqueName}/function-app-managed-identity'
  audiences: [
    'api://AzureADTokenExchange'
  ]
  issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
  subject: identityPrincipalId
  description: 'The delegated admin monitor function app signs users in with its managed identity.'
}

// Only users and groups assigned one of the two roles can sign in at all.
resource appServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
  appRoleAssignmentRequired: true
}

resource readerAssignment 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (!empty(readerPrincipalId)) {
  appRoleId: relationshipsReadRoleId
  principalId: readerPrincipalId
  resourceId: appServicePrincipal.id
}

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

// Application permissions of the function app's identity on Microsoft Graph. Assigning the app
// role is the admin consent: no separate consent step.
resource graphPermissions 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for grant in grantedGraphRoles: {
  appRoleId: grant.appRoleId
  principalId: grant.principalId
  resourceId: graph.id
}]

// GDAP with application permissions requires this first-party service principal in the partner
// tenant ("provision the service principal identified by appId 2832473f-..."). Creating it is
// idempotent: an existing one is left as it is.
resource partnerCustomerDelegatedAdministration 'Microsoft.Graph/servicePrincipals@v1.0' = if (provisionPartnerCustomerDelegatedAdministration) {
  appId: partnerCustomerDelegatedAdministrationAppId
}

output clientId string = app.appId
output applicationObjectId string = app.id
output servicePrincipalId string = appServicePrincipal.id
