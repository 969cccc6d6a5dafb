// Read access for the app's identity to the storage account Entra archives the sign-in logs to
// (deployed in that account's resource group, wherever the partner keeps it).

@description('Name of the archive storage account.')
param accountName string

@description('Principal (object) id of the function app\'s user-assigned managed identity.')
param principalId string

var roles = {
  // Storage Blob Data Reader: list and read the archive's blobs, nothing else.
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
}

resource archive 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName
}

resource reader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(archive.id, principalId, roles.storageBlobDataReader)
  scope: archive
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
  }
}

output roleAssignmentId string = reader.id
