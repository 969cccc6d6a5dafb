// The user-assigned managed identity the function app runs as. Every data-plane permission
// (storage, Key Vault, Application Insights, Microsoft Graph) is granted to this one identity,
// so rotating or auditing access means looking at one principal.

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
