// Virtual network for the function app: one subnet delegated to Flex Consumption for outbound
// VNet integration, one for the private endpoints of storage and Key Vault, and the private DNS
// zones that make the storage and vault host names resolve to those endpoints inside the VNet.

@description('Name of the virtual network.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Address space of the virtual network.')
param addressPrefix string = '10.40.0.0/16'

@description('Subnet delegated to the Flex Consumption app (outbound VNet integration).')
param appSubnetPrefix string = '10.40.1.0/24'

@description('Subnet holding the private endpoints.')
param privateEndpointSubnetPrefix string = '10.40.2.0/24'

// Private DNS zone names follow the cloud the deployment runs in (public, US Gov, China).
var vaultZone = 'privatelink${replace(environment().suffixes.keyvaultDns, '.vault.', '.vaultcore.')}'
var privateDnsZones = [
  {
    key: 'blob'
    zone: 'privatelink.blob.${environment().suffixes.storage}'
  }
  {
    key: 'queue'
    zone: 'privatelink.queue.${environment().suffixes.storage}'
  }
  {
    key: 'table'
    zone: 'privatelink.table.${environment().suffixes.storage}'
  }
  {
    key: 'vault'
    zone: vaultZone
  }
]

// No custom rules: the defaults deny inbound from the internet and allow VNet-internal traffic.
resource appSubnetNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: '${name}-app-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource privateEndpointNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: '${name}-pe-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          networkSecurityGroup: {
            id: appSubnetNsg.id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                // Flex Consumption integrates through this delegation (not Microsoft.Web/serverFarms).
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: privateEndpointNsg.id
          }
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for z in privateDnsZones: {
  name: z.zone
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (z, i) in privateDnsZones: {
  parent: zones[i]
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

output id string = vnet.id
output name string = vnet.name
output appSubnetId string = '${vnet.id}/subnets/app'
output privateEndpointSubnetId string = '${vnet.id}/subnets/private-endpoints'
output privateDnsZoneIds object = {
  blob: zones[0].id
  queue: zones[1].id
  table: zones[2].id
  vault: zones[3].id
}
