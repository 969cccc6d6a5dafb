// One Key Vault secret, written through Azure Resource Manager.

@description('Name of the existing vault.')
param vaultName string

@description('Secret name.')
param name string

@secure()
@description('Secret value.')
param value string

@description('Expiry as seconds since the Unix epoch. Key Vault still returns an expired secret; the date drives the near-expiry events and the portal warning.')
param expiresOn int

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: name
  properties: {
    value: value
    contentType: 'text/plain'
    attributes: {
      enabled: true
      exp: expiresOn
    }
  }
}

output name string = secret.name
