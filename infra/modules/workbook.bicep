// The Azure Monitor workbook partners open in the Azure portal (Monitor > Workbooks, or the
// Application Insights resource > Workbooks): customers per bucket over time, removals and their
// outcomes, failures and ingestion lag, from the app's custom events. The layout lives in
// workbook.json so it can be edited in the portal and pasted back ("Advanced editor").

@description('Display name of the workbook.')
param displayName string = 'Delegated Admin Monitor'

@description('Azure region.')
param location string

@description('Tags applied to the workbook.')
param tags object

@description('Resource id of the Application Insights component the queries run against.')
param applicationInsightsId string

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // Deterministic, so a redeployment updates the same workbook instead of adding another.
  name: guid(resourceGroup().id, applicationInsightsId, 'delegated-admin-monitor-workbook')
  location: location
  tags: union(tags, {
    'hidden-title': displayName
  })
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    version: 'Notebook/1.0'
    sourceId: applicationInsightsId
    serializedData: replace(loadTextContent('workbook.json'), '__APPLICATION_INSIGHTS_ID__', applicationInsightsId)
  }
}

output id string = workbook.id
