// A user-assigned managed identity of the function app. main.bicep makes three, one per
// permission set (docs/deploy.md, "Identities"): the app's own (storage, Key Vault, Application
// Insights, the Microsoft Graph reads), the GDAP writer (DelegatedAdminRelationship.ReadWrite.All
// only) and the mail sender (Mail.Send on the sender mailbox only, through Exchange Online).

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the resource.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
