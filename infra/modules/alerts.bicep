// Alerts on the app's telemetry, mailed to the partner's admins through one action group:
// ingestion stale, removal failures, poison messages and the removal circuit breaker.

@description('Azure region of the alert rules.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Resource id of the Application Insights component the rules query.')
param applicationInsightsId string

@description('E-mail address of the partner admin (or distribution list) that receives the alerts.')
param partnerAdminEmail string

@description('Hours without a successful sign-in ingestion before the stale alert fires (INGESTION_STALE_HOURS; the alert looks back at most 48 hours).')
@minValue(1)
@maxValue(48)
param ingestionStaleHours int = 6

@description('Prefix of the alert rule names.')
param namePrefix string

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${namePrefix}-partner-admins'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'DAMonitor'
    enabled: true
    emailReceivers: [
      {
        name: 'partner-admin'
        emailAddress: partnerAdminEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var rules = [
  {
    name: 'ingestion-stale'
    displayName: 'Delegated Admin Monitor: sign-in ingestion stale'
    description: 'No IngestionCompleted event for ${ingestionStaleHours} hours, or the app reported IngestionStale in the last hour. Enforcement is paused until ingestion catches up; check IngestionFailed events and the Graph permissions of the managed identity.'
    severity: 2
    evaluationFrequency: 'PT1H'
    // The window is the longest a log alert may have; the query applies INGESTION_STALE_HOURS
    // itself, so any value up to 48 hours works. Silence (no event at all) fires too.
    windowSize: 'P2D'
    query: 'customEvents\n| summarize lastCompleted = maxif(timestamp, name == "IngestionCompleted"), staleReports = countif(name == "IngestionStale" and timestamp > ago(1h))\n| where isnull(lastCompleted) or lastCompleted < ago(${ingestionStaleHours}h) or staleReports > 0'
  }
  {
    name: 'removal-failed'
    displayName: 'Delegated Admin Monitor: removal failed'
    description: 'A DAP/GDAP removal failed (RemovalFailed). The relationship is still in place; see the workbook for the tenant and reason.'
    severity: 1
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    query: 'customEvents\n| where name == "RemovalFailed"\n| project timestamp, tenantId = tostring(customDimensions.tenantId), relationshipType = tostring(customDimensions.type), reason = tostring(customDimensions.reason)'
  }
  {
    name: 'poison-message'
    displayName: 'Delegated Admin Monitor: poison queue message'
    description: 'A removal or notification message failed every attempt and was moved to its -poison queue (PoisonMessage event, or the Functions host moving a message after MaxDequeueCount).'
    severity: 2
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    query: 'union\n    (customEvents | where name == "PoisonMessage" | project timestamp, queue = tostring(customDimensions.queue)),\n    (traces | where message has "MaxDequeueCount" and message has "-poison" | project timestamp, queue = extract("queue \'([^\']+)\'", 1, message))'
  }
  {
    name: 'circuit-breaker'
    displayName: 'Delegated Admin Monitor: removal circuit breaker tripped'
    description: 'An enforcement run found more removal candidates than MAX_REMOVALS_PER_RUN and removed none. Review the candidates before raising the limit.'
    severity: 1
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    query: 'customEvents\n| where name == "CircuitBreakerTripped"'
  }
  {
    name: 'mail-failed'
    displayName: 'Delegated Admin Monitor: mail cannot be sent'
    description: 'A notice, warning, digest or alert could not be sent (MailFailed): a wrong NOTIFY_SENDER, Mail.Send missing or restricted. While customer notices cannot be sent, enforcement removes nothing.'
    severity: 1
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    query: 'customEvents\n| where name == "MailFailed"\n| project timestamp, kind = tostring(customDimensions.action), reason = tostring(customDimensions.reason)'
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in rules: {
  name: '${namePrefix}-${rule.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: rule.evaluationFrequency
    windowSize: rule.windowSize
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

output actionGroupId string = actionGroup.id
