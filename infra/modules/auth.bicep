// App Service Authentication (Easy Auth, authsettingsV2) with Microsoft Entra ID in front of the
// function app. The browser portal at "/" redirects to the Entra sign-in page; "/api/*" is
// excluded from that redirect, so an unauthenticated API call reaches the app without an
// X-MS-CLIENT-PRINCIPAL header and the app answers 401 (and 403 without the app role), as
// docs/definitions.md section 6 describes. Signed-in requests carry the principal on every path.

@description('Name of the existing function app.')
param functionAppName string

@description('Client (application) id of the app registration users sign in to.')
param clientId string

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:The check reads the v1 "authsettings" shape (properties.enabled); this is authsettingsV2, switched on by properties.platform.enabled, which CKV_AZURE_56 verifies.
  // checkov:skip=CKV_AZURE_63:HTTP logging belongs to the "web"/"logs" config of a site, not to authsettingsV2; Flex Consumption has no file-system HTTP logs and its request logs go to Application Insights and the FunctionAppLogs diagnostic setting.
  // checkov:skip=CKV_AZURE_65:Detailed error pages belong to the "web"/"logs" config, not to authsettingsV2; errors are recorded in Application Insights.
  // checkov:skip=CKV_AZURE_66:Failed request tracing belongs to the "web"/"logs" config, not to authsettingsV2; failed requests are recorded in Application Insights.
  // checkov:skip=CKV_AZURE_80:netFrameworkVersion belongs to the "web" config of a site, not to authsettingsV2; the app runs Python 3.11.
  // checkov:skip=CKV_AZURE_222:publicNetworkAccess belongs to the site (skipped there with its reason in functionapp.bicep), not to authsettingsV2.
  // checkov:skip=CKV_AZURE_88:Azure Files mounts are not part of authsettingsV2, and Flex Consumption has no content share.
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
      runtimeVersion: '~1'
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      // The API decides itself: no principal -> 401, no role -> 403 (never a login redirect).
      excludedPaths: [
        '/api/*'
      ]
    }
    httpSettings: {
      requireHttps: true
      forwardProxy: {
        convention: 'NoProxy'
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          // Not a secret: the managed identity's client id, used as a federated credential.
          clientSecretSettingName: 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            clientId
            'api://${clientId}'
          ]
        }
        login: {
          disableWWWAuthenticate: false
        }
      }
    }
    login: {
      tokenStore: {
        // The app needs the signed-in user's identity and roles only, never their tokens.
        enabled: false
      }
      preserveUrlFragmentsForLogins: true
    }
  }
}
