<#
.SYNOPSIS
Lets Delegated Admin Monitor's mail identity send mail as its one sender mailbox, and as no other.

.DESCRIPTION
Exchange Online "RBAC for Applications" (https://learn.microsoft.com/exchange/permissions-exo/application-rbac),
which replaces application access policies: a service principal pointer for the managed identity, a management
scope holding only the sender mailbox, and the role "Application Mail.Send" assigned to the identity within that
scope. The deployment grants the identity no Microsoft Graph Mail.Send (GRANT_MAIL_SEND=false, the default):
an Entra grant would add tenant-wide sending to this scoped one.

Idempotent: what exists already is left as it is, so the script can be run again after each azd provision.
Needs Exchange Online PowerShell (Install-Module ExchangeOnlineManagement) and a member of the Organization
Management role group (or the Exchange Administrator role in Entra ID). azd's postprovision hook prints the
command line with every value filled in.

.EXAMPLE
pwsh tools/restrict-mail-send.ps1 -AppId <MAIL_IDENTITY_CLIENT_ID> -ObjectId <MAIL_IDENTITY_PRINCIPAL_ID> -Sender dam-notifications@partner.example
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    # Client id of the mail identity (azd env get-value MAIL_IDENTITY_CLIENT_ID).
    [Parameter(Mandatory)][guid]$AppId,
    # Its principal (service principal object) id (azd env get-value MAIL_IDENTITY_PRINCIPAL_ID).
    [Parameter(Mandatory)][guid]$ObjectId,
    # The mailbox the app sends from (NOTIFY_SENDER).
    [Parameter(Mandatory)][ValidatePattern('^[^@\s]+@[^@\s]+$')][string]$Sender,
    [string]$DisplayName = 'Delegated Admin Monitor mail',
    [string]$ScopeName = 'Delegated Admin Monitor sender'
)
$ErrorActionPreference = 'Stop'

if (-not (Get-Command Get-ServicePrincipal -ErrorAction SilentlyContinue)) {
    Connect-ExchangeOnline -ShowBanner:$false
}

$mailbox = Get-Mailbox -Identity $Sender   # fails here, before any change, if the mailbox does not exist

$pointer = Get-ServicePrincipal -Identity "$AppId" -ErrorAction SilentlyContinue
if (-not $pointer -and $PSCmdlet.ShouldProcess($AppId, 'New-ServicePrincipal')) {
    $pointer = New-ServicePrincipal -AppId "$AppId" -ObjectId "$ObjectId" -DisplayName $DisplayName
}

$filter = "PrimarySmtpAddress -eq '$($mailbox.PrimarySmtpAddress)'"
$scope = Get-ManagementScope -Identity $ScopeName -ErrorAction SilentlyContinue
if (-not $scope -and $PSCmdlet.ShouldProcess($ScopeName, 'New-ManagementScope')) {
    $scope = New-ManagementScope -Name $ScopeName -RecipientRestrictionFilter $filter
}
elseif ($scope -and $scope.RecipientFilter -ne $filter -and $PSCmdlet.ShouldProcess($ScopeName, 'Set-ManagementScope')) {
    Set-ManagementScope -Identity $ScopeName -RecipientRestrictionFilter $filter
}

$assigned = Get-ManagementRoleAssignment -Role 'Application Mail.Send' -ErrorAction SilentlyContinue |
    Where-Object { $_.App -eq "$AppId" -or $_.RoleAssigneeName -eq $pointer.Identity }
if (-not $assigned -and $PSCmdlet.ShouldProcess($AppId, 'New-ManagementRoleAssignment Application Mail.Send')) {
    New-ManagementRoleAssignment -App "$AppId" -Role 'Application Mail.Send' -CustomResourceScope $ScopeName | Out-Null
}

# The answer Exchange gives now (a new assignment can take up to an hour to apply everywhere).
Test-ServicePrincipalAuthorization -Identity "$AppId" -Resource $mailbox.PrimarySmtpAddress |
    Format-Table RoleName, GrantedPermissions, AllowedResourceScope, InScope -AutoSize
