"""Infrastructure as code: checkov over infra/, every Bicep file parses, the Bicep keeps in step with
the code (every setting is an app setting with the settings class's default, every queue and its
poison queue is created), and the telemetry the workbook and the alerts read.

checkov and pycep live in .venv-tools (requirements-tools.txt) because checkov's pins clash with
the app's; they run here as subprocesses. Without .venv-tools the infrastructure tests are skipped
locally and fail under CI.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from shared.platform import telemetry
from shared.platform.settings import QUEUES, Settings

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
TOOLS_BIN = ROOT / ".venv-tools" / "bin"
TOOLS_PYTHON = TOOLS_BIN / "python"
CHECKOV = TOOLS_BIN / "checkov"

MAIN = "infra/main.bicep"
FUNCTION_APP = "infra/modules/functionapp.bicep"
STORAGE = "infra/modules/storage.bicep"
RBAC = "infra/modules/rbac.bicep"
ENTRA = "infra/modules/entra.bicep"

# Settings the function app does not get as an app setting of that name, and why:
SETTINGS_NOT_IN_AZURE = {
    # a connection string; in Azure the host and the app use the identity-based
    # AzureWebJobsStorage__* settings instead (shared keys are disabled on the account)
    "AzureWebJobsStorage",
    # development only: point every Microsoft endpoint at the local emulator
    "EMULATOR_URL",
    # development only: lets tests share one Azurite; production names carry no prefix
    "STORAGE_PREFIX",
}
# Product settings whose Azure value is derived from the deployment instead of the class default:
# PARTNER_TENANT_ID is the tenant deployed to (the class's empty default means "ask Graph", same answer).
# the tenant deployed to; the archive account's blob endpoint, from its resource id
ARCHIVE_ACCESS = "infra/modules/archive-access.bicep"
DERIVED_IN_AZURE = {"PARTNER_TENANT_ID", "SIGNIN_ARCHIVE_CONNECTION"}


def _tools_or_skip() -> None:
    if TOOLS_PYTHON.exists() and CHECKOV.exists():
        return
    message = (
        ".venv-tools is missing: run `make setup` "
        "(python3 -m venv .venv-tools && .venv-tools/bin/python -m pip install -r requirements-tools.txt)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    """Every .bicep file under infra/ as pycep JSON (tools/infra_check.py in .venv-tools)."""
    _tools_or_skip()
    result = subprocess.run(
        [str(TOOLS_PYTHON), "tools/infra_check.py", "infra"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), f"infra_check failed to run: {result.stderr}"
    files: dict[str, Any] = json.loads(result.stdout)["files"]
    return files


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _tools_or_skip()
    # checkov's Bicep parser (the pycep it pins) predates the `extension` declaration that
    # modules/entra.bicep needs for its Microsoft Graph resources. So that checkov scans every file,
    # it reads a copy of infra/ with exactly those lines blanked, as tools/infra_check.py parses them
    # (line numbers unchanged); nothing else differs from the files that are deployed.
    copy = tmp_path_factory.mktemp("checkov") / "infra"
    shutil.copytree(INFRA, copy)
    for bicep in copy.rglob("*.bicep"):
        lines = bicep.read_text(encoding="utf-8").split("\n")
        blank = [
            re.fullmatch(r"extension\s+[A-Za-z_][A-Za-z0-9_]*\s*(?://.*)?", line.strip()) for line in lines
        ]
        bicep.write_text(
            "\n".join("" if b else line for b, line in zip(blank, lines, strict=True)), encoding="utf-8"
        )
    # --skip-download: no calls to the checkov platform (there is no network here).
    result = subprocess.run(
        [str(CHECKOV), "-d", str(copy), "--framework", "bicep", "-o", "json", "--skip-download"],
        cwd=copy.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"},
    )
    assert result.stdout.strip(), (
        f"checkov printed nothing (exit {result.returncode}): {result.stderr[-2000:]}"
    )
    report = json.loads(result.stdout)
    if isinstance(report, list):  # one report per framework; only bicep was asked for
        report = next(r for r in report if r.get("check_type") == "bicep")
    assert isinstance(report, dict)
    return report


def tree(parsed: dict[str, Any], path: str) -> dict[str, Any]:
    entry = parsed[path]
    assert entry["ok"], f"{path}: {entry['error']}"
    result: dict[str, Any] = entry["tree"]
    return result


def resources_of_type(parsed: dict[str, Any], resource_type: str) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, entry in parsed.items():
        for name, resource in ((entry["tree"] or {}).get("resources") or {}).items():
            if resource["type"] == resource_type and not resource["existing"]:
                found.append((path, name, resource))
    return found


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's properties, through a for-loop or condition wrapper if there is one."""
    config: dict[str, Any] = resource["config"]
    while "loop_type" in config or "condition" in config:
        config = config["config"]
    return config


def format_default(value: Any) -> str:
    """A settings-class default as the app setting string the class parses back to it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def bicep_value_default(expression: Any, parameters: dict[str, Any]) -> str:
    """The app setting string an expression of main.bicep's appSettings gives with the defaults."""
    if isinstance(expression, str):  # a parameter reference
        assert expression in parameters, f"{expression!r} is not a parameter of main.bicep"
        return format_default(parameters[expression]["default"])
    if "function" in expression and expression["function"]["type"] == "string":
        name = expression["function"]["parameters"]["value_to_convert"]
        return str(parameters[name]["default"])
    operator = expression.get("operator", {})
    if operator.get("type") == "conditional":  # flag ? 'true' : 'false'
        operands = operator["operands"]
        flag = parameters[operands["condition"]]["default"]
        return str(operands["true_value"] if flag else operands["false_value"])
    raise AssertionError(f"unexpected app setting expression {expression!r}")


# --- checkov --------------------------------------------------------------------------------------


def test_checkov_passes_with_zero_failed_checks(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['file_path']} {c['resource']}: {c['check_name']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0 and not failed, "\n".join(failed)
    assert summary["passed"] > 0 and summary["resource_count"] > 0, summary


def test_every_checkov_skip_says_why(checkov_report: dict[str, Any]) -> None:
    for check in checkov_report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 30 and reason != "No comment provided", (check["check_id"], check["resource"])


def test_checkov_parses_and_scans_every_bicep_file(
    checkov_report: dict[str, Any], parsed: dict[str, Any]
) -> None:
    # Every file, entra.bicep included (its `extension` line blanked in checkov's copy, see the fixture).
    assert checkov_report["results"].get("parsing_errors", []) == []
    scanned = {
        Path(c["file_path"]).name
        for kind in ("passed_checks", "failed_checks", "skipped_checks")
        for c in checkov_report["results"][kind]
    }
    assert {"main.bicep", "storage.bicep", "functionapp.bicep", "keyvault.bicep"} <= scanned
    assert {path for path, entry in parsed.items() if entry["extensions"]} == {ENTRA}


# --- parsing --------------------------------------------------------------------------------------


def test_every_bicep_file_parses(parsed: dict[str, Any]) -> None:
    on_disk = {p.relative_to(ROOT).as_posix() for p in INFRA.rglob("*.bicep")}
    assert set(parsed) == on_disk and MAIN in on_disk and len(on_disk) >= 10
    errors = {path: entry["error"] for path, entry in parsed.items() if not entry["ok"]}
    assert not errors, errors


def test_only_the_entra_module_uses_the_graph_extension(parsed: dict[str, Any]) -> None:
    assert {path: entry["extensions"] for path, entry in parsed.items() if entry["extensions"]} == {
        ENTRA: ["microsoftGraphV1"]
    }
    config = json.loads((INFRA / "bicepconfig.json").read_text(encoding="utf-8"))
    assert config["extensions"]["microsoftGraphV1"].startswith(
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:"
    )
    graph_types = {r["type"] for r in tree(parsed, ENTRA)["resources"].values()}
    assert graph_types <= {
        "Microsoft.Graph/applications",
        "Microsoft.Graph/applications/federatedIdentityCredentials",
        "Microsoft.Graph/servicePrincipals",
        "Microsoft.Graph/appRoleAssignedTo",
    }


def test_modules_are_local(parsed: dict[str, Any]) -> None:
    for path, entry in parsed.items():
        for name, module in ((entry["tree"] or {}).get("modules") or {}).items():
            assert module["type"] == "local", f"{path}: module {name} is not a local file"
            assert (ROOT / Path(path).parent / module["detail"]["path"]).exists(), (path, name)


# --- settings and queues ---------------------------------------------------------------------------


def app_setting_names(parsed: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(main.bicep's product settings, functionapp.bicep's platform settings), after checking that
    both reach the site's siteConfig.appSettings."""
    main = tree(parsed, MAIN)
    app = tree(parsed, FUNCTION_APP)
    product = set(main["variables"]["appSettings"]["value"])
    platform = set(app["variables"]["platformSettings"]["value"])
    # main.bicep hands its appSettings to the module ...
    assert main["modules"]["functionApp"]["config"]["params"]["appSettings"] == "appSettings"
    # ... which unions them with the platform's and turns every entry into a site app setting.
    assert app["variables"]["allSettings"]["value"]["function"] == {
        "type": "union",
        "parameters": {"arg_1": "appSettings", "arg_2": "platformSettings"},
    }
    site_settings = body(app["resources"]["functionApp"])["properties"]["siteConfig"]["appSettings"]
    assert site_settings["loop_type"] == {
        "type": "object",
        "detail": {"item_name": "setting", "object_name": "allSettings"},
    }
    return product, platform


def test_every_setting_of_the_settings_class_is_an_app_setting(parsed: dict[str, Any]) -> None:
    product, platform = app_setting_names(parsed)
    assert not product & platform, "set in two places"
    names = product | platform
    missing = [n for n in Settings.setting_names() if n not in names and n not in SETTINGS_NOT_IN_AZURE]
    assert not missing, f"settings without an app setting in the Bicep: {missing}"
    assert not SETTINGS_NOT_IN_AZURE & names
    # every product setting is a real setting (catches typos)
    assert product <= set(Settings.setting_names()), product - set(Settings.setting_names())


def test_app_settings_default_to_the_settings_class_defaults(parsed: dict[str, Any]) -> None:
    main = tree(parsed, MAIN)
    parameters = main["parameters"]
    expressions = main["variables"]["appSettings"]["value"]
    defaults = {f.metadata["env"]: f.default for f in fields(Settings)}
    azd = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    checked = 0
    for name, expression in expressions.items():
        if name in DERIVED_IN_AZURE:
            continue
        expected = format_default(defaults[name])
        assert bicep_value_default(expression, parameters) == expected, name
        # azd passes ${NAME=default} for the parameter behind it: same default, same variable name.
        parameter = (
            expression
            if isinstance(expression, str)
            else (
                expression.get("function", {}).get("parameters", {}).get("value_to_convert")
                or expression["operator"]["operands"]["condition"]
            )
        )
        assert azd[parameter]["value"] == f"${{{name}={expected}}}", (name, azd[parameter])
        checked += 1
    assert checked >= 20


def test_local_settings_example_lists_every_setting_with_its_default() -> None:
    """``func start`` reads local.settings.json (copied from the example): every setting is there with the
    settings class's default, the host's storage on Azurite."""
    values = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"]
    local = {"FUNCTIONS_WORKER_RUNTIME": "python", "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    expected = {
        **{f.metadata["env"]: format_default(f.default) for f in fields(Settings)},
        **local,
    }
    assert values == expected


def test_platform_settings_use_the_managed_identity(parsed: dict[str, Any]) -> None:
    app = tree(parsed, FUNCTION_APP)
    platform = app["variables"]["platformSettings"]["value"]
    assert platform["AzureWebJobsStorage__credential"] == "managedidentity"
    assert platform["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert platform["AZURE_CLIENT_ID"] == "identityClientId"
    for service in ("blob", "queue", "table"):
        assert f"AzureWebJobsStorage__{service}ServiceUri" in platform
    assert (
        platform["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "Authorization=AAD;ClientId=${identityClientId}"
    )
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in platform
    for name, secret in (
        ("PARTNER_CENTER_APP_SECRET", "appSecretReference"),
        ("PARTNER_CENTER_REFRESH_TOKEN", "refreshTokenReference"),
    ):
        assert platform[name]["operator"]["operands"]["true_value"] == secret
        assert app["variables"][secret]["value"].startswith("@Microsoft.KeyVault(VaultName=")
    assert "PARTNER_CENTER_REFRESH_TOKEN_SECRET_URI" in platform
    # Flex Consumption takes the runtime from functionAppConfig; these settings are not allowed there.
    everything = set(platform) | set(tree(parsed, MAIN)["variables"]["appSettings"]["value"])
    assert not everything & {"FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}


def test_function_app_is_python_311_on_flex_consumption(parsed: dict[str, Any]) -> None:
    app = tree(parsed, FUNCTION_APP)
    assert body(app["resources"]["plan"])["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    site = body(app["resources"]["functionApp"])
    assert site["identity"]["type"] == "UserAssigned"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert {"maximumInstanceCount", "instanceMemoryMB"} <= set(config["scaleAndConcurrency"])
    assert site["properties"]["httpsOnly"] is True
    assert site["properties"]["keyVaultReferenceIdentity"] == "identityId"


def test_every_queue_and_its_poison_queue_is_created(parsed: dict[str, Any]) -> None:
    queue_resources = resources_of_type(parsed, "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert [(path, name) for path, name, _ in queue_resources] == [(STORAGE, "queues")]
    loop = queue_resources[0][2]["config"]["loop_type"]
    assert loop == {"type": "array", "detail": {"item_name": "queueName", "array_name": "queueNames"}}
    assert body(queue_resources[0][2])["name"] == "queueName"
    main = tree(parsed, MAIN)
    assert main["modules"]["storage"]["config"]["params"]["queueNames"] == "queueNames"
    created = main["variables"]["queueNames"]["value"]
    expected = {name for queue in QUEUES for name in (queue, f"{queue}-poison")}
    assert set(created) == expected and len(created) == len(expected)


def test_storage_account_is_identity_only_and_private(parsed: dict[str, Any]) -> None:
    account = body(tree(parsed, STORAGE)["resources"]["storage"])["properties"]
    assert account["allowSharedKeyAccess"] is False
    assert account["allowBlobPublicAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["publicNetworkAccess"] == "Disabled"
    container = body(tree(parsed, STORAGE)["resources"]["deploymentContainer"])
    assert container["properties"]["publicAccess"] == "None"


def test_key_vault_is_rbac_only_purge_protected_and_private(parsed: dict[str, Any]) -> None:
    vault = body(tree(parsed, "infra/modules/keyvault.bicep")["resources"]["vault"])["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enablePurgeProtection"] is True and vault["enableSoftDelete"] is True
    assert vault["publicNetworkAccess"] == "Disabled"


def test_role_assignments_live_in_one_module_with_deterministic_names(parsed: dict[str, Any]) -> None:
    assignments = resources_of_type(parsed, "Microsoft.Authorization/roleAssignments")
    # One module, and one other that must be deployed where the partner keeps its sign-in archive.
    assert {path for path, _, _ in assignments} == {RBAC, ARCHIVE_ACCESS}
    assert set(tree(parsed, ARCHIVE_ACCESS)["variables"]["roles"]["value"].values()) == {
        "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"  # Storage Blob Data Reader
    }
    roles = tree(parsed, RBAC)["variables"]["roles"]["value"]
    assert set(roles.values()) == {
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",  # Storage Queue Data Contributor
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",  # Storage Table Data Contributor
        "3913510d-42f4-4e42-8a64-420c390055eb",  # Monitoring Metrics Publisher
        "4633458b-17de-408a-b874-0445c86b69e6",  # Key Vault Secrets User
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",  # Key Vault Secrets Officer (the refresh-token secret only)
    }
    for _, name, resource in assignments:
        guid = body(resource)["name"]["function"]
        assert guid["type"] == "guid", name
        scope, principal, role = guid["parameters"].values()
        assert scope["operator"]["operands"]["operand_2"] == "id" and principal == "principalId", name
        assert role["operator"]["operands"]["operand_1"] == "roles", name


def test_outputs_are_upper_snake_for_azd(parsed: dict[str, Any]) -> None:
    outputs = tree(parsed, MAIN)["outputs"]
    assert outputs and all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in outputs), list(outputs)
    assert {"SERVICE_API_NAME", "SERVICE_API_URI", "AZURE_MANAGED_IDENTITY_CLIENT_ID"} <= set(outputs)


def test_azure_yaml_deploys_the_root_as_the_tagged_function_app(parsed: dict[str, Any]) -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(
        r"^services:\n  api:\n    project: \.\n    language: python\n    host: function$", text, re.M
    )
    assert re.search(r"^infra:\n  provider: bicep\n  path: infra\n  module: main$", text, re.M)
    tags = body(tree(parsed, FUNCTION_APP)["resources"]["functionApp"])["tags"]
    # pycep keeps the quotes of a quoted object key
    assert tags["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "api"}


def test_each_identity_holds_only_its_jobs_permissions(parsed: dict[str, Any]) -> None:
    """Three identities: the app's own reads, the writer writes GDAP, the mail identity gets Mail.Send
    only when GRANT_MAIL_SEND (default false: Exchange Online scopes it to the sender instead)."""
    text = (INFRA / "modules" / "entra.bicep").read_text(encoding="utf-8")
    grants = re.findall(r"principalId: (\w+)\n\s+appRoleId: graphAppRoles\['([\w.]+)'\]", text)
    assert sorted(grants) == sorted(
        [
            ("identityPrincipalId", "AuditLog.Read.All"),
            ("identityPrincipalId", "Directory.Read.All"),
            ("identityPrincipalId", "DelegatedAdminRelationship.Read.All"),
            ("writerPrincipalId", "DelegatedAdminRelationship.ReadWrite.All"),
            ("writerPrincipalId", "GroupMember.ReadWrite.All"),
            ("mailPrincipalId", "Mail.Send"),
        ]
    )
    assert "], grantMailSend ? [\n  {\n    principalId: mailPrincipalId" in text
    assert "param grantMailSend bool = false" in text
    main = (INFRA / "main.bicep").read_text(encoding="utf-8")
    assert "param grantMailSend bool = false" in main
    azd = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert azd["grantMailSend"]["value"] == "${GRANT_MAIL_SEND=false}"
    platform = tree(parsed, FUNCTION_APP)["variables"]["platformSettings"]["value"]
    assert platform["GRAPH_WRITE_CLIENT_ID"] == "writerIdentityClientId"
    assert platform["MAIL_CLIENT_ID"] == "mailIdentityClientId"
    identities = body(tree(parsed, FUNCTION_APP)["resources"]["functionApp"])["identity"]
    assert len(identities["userAssignedIdentities"]) == 3


def test_entra_module_defines_the_app_roles_and_graph_permissions() -> None:
    text = (INFRA / "modules" / "entra.bicep").read_text(encoding="utf-8")
    for role in ("Relationships.Read", "Relationships.Remove", "Relationships.Grant"):
        assert f"value: '{role}'" in text
    for permission, app_role_id in {
        "AuditLog.Read.All": "b0afded3-3588-46d8-8b3d-9842eff778da",
        "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
        "DelegatedAdminRelationship.Read.All": "f6e9e124-4586-492f-adc0-c6f96e4823fd",
        "DelegatedAdminRelationship.ReadWrite.All": "cc13eba4-8cd8-44c6-b4d4-f93237adce58",
        "Mail.Send": "b633e1c5-b582-4048-a93e-9f11b44c7e96",
        "GroupMember.ReadWrite.All": "dbaae8cf-10b5-4b86-a4a1-f871c94c6695",
    }.items():
        assert f"'{permission}': '{app_role_id}'" in text
    assert "Microsoft.Graph/appRoleAssignedTo@v1.0" in text
    assert "2832473f-ec63-45fb-976f-5d45a7d4bb91" in text


def test_easy_auth_redirects_the_portal_and_leaves_the_api_to_answer_401(parsed: dict[str, Any]) -> None:
    auth = body(tree(parsed, "infra/modules/auth.bicep")["resources"]["authSettings"])
    assert auth["name"] == "authsettingsV2"
    validation = auth["properties"]["globalValidation"]
    assert validation["unauthenticatedClientAction"] == "RedirectToLoginPage"
    assert validation["excludedPaths"] == ["/api/*"]
    assert auth["properties"]["platform"]["enabled"] is True


# --- the workbook and the alerts read the app's events -----------------------------------------------


def kql_event_names(query: str) -> set[str]:
    names = set(re.findall(r'name\s*==\s*"(\w+)"', query))
    for group in re.findall(r"name\s+in\s*\(([^)]*)\)", query):
        names |= set(re.findall(r'"(\w+)"', group))
    return names


def test_workbook_and_alerts_query_the_events_the_app_emits(parsed: dict[str, Any]) -> None:
    workbook = json.loads((INFRA / "modules" / "workbook.json").read_text(encoding="utf-8"))
    queries = [item["content"]["query"] for item in workbook["items"] if item["type"] == 3]
    rules = tree(parsed, "infra/modules/alerts.bicep")["variables"]["rules"]["value"]
    queries += [rule["query"] for rule in rules]
    used = set().union(*(kql_event_names(q) for q in queries))
    assert used <= telemetry.EVENT_NAMES, used - telemetry.EVENT_NAMES
    assert used == telemetry.EVENT_NAMES, telemetry.EVENT_NAMES - used
    alerting = set().union(*(kql_event_names(rule["query"]) for rule in rules))
    assert {"IngestionStale", "RemovalFailed", "PoisonMessage", "CircuitBreakerTripped"} <= alerting
    assert "__APPLICATION_INSIGHTS_ID__" in json.dumps(workbook["fallbackResourceIds"])


# --- shared/platform/telemetry.py -------------------------------------------------------------------------


@pytest.fixture
def fresh_telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    telemetry._reset_for_tests()
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    yield
    telemetry._reset_for_tests()
    events_logger = logging.getLogger(telemetry.EVENTS_LOGGER_NAME)
    for handler in list(events_logger.handlers):
        events_logger.removeHandler(handler)


def test_telemetry_is_a_noop_without_a_connection_string(
    fresh_telemetry: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Even a broken distro is never imported when nothing is configured.
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", None)
    assert telemetry.configure_telemetry() is False
    assert telemetry.configure_telemetry() is False
    with caplog.at_level(logging.DEBUG, logger="shared.platform.telemetry"):
        telemetry.track_event(
            telemetry.EVENT_REMOVAL_FAILED, {"tenantId": "t", "type": "GDAP", "reason": "x"}
        )
        telemetry.track_metric("ingestion.lag_minutes", 3.5, {"mode": "report"})
    assert not telemetry.is_enabled()
    assert any("RemovalFailed" in r.getMessage() and "not exported" in r.getMessage() for r in caplog.records)


def test_azd_prints_the_portal_and_the_steps_left_after_provisioning() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert "postprovision:" in text and "tools/postprovision.py" in text
    env = {
        **os.environ,
        "SERVICE_API_URI": "https://func-dam-abc.azurewebsites.net",
        "ENTRA_APP_CLIENT_ID": "11111111-2222-4333-8444-555555555555",
        "MAIL_IDENTITY_CLIENT_ID": "66666666-7777-4888-9999-000000000000",
        "MAIL_IDENTITY_PRINCIPAL_ID": "77777777-8888-4999-8000-111111111111",
        "NOTIFY_SENDER": "notices@contoso.example",
    }
    done = subprocess.run(
        [sys.executable, "tools/postprovision.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "Portal: https://func-dam-abc.azurewebsites.net"
    assert any("Relationships.Remove" in line and "11111111-2222" in line for line in lines)
    assert any("RBAC for Applications" in line and "notices@contoso.example" in line for line in lines)
    # GRANT_MAIL_SEND defaults to false: the script that scopes the mail identity, every value filled in.
    assert (
        "   pwsh tools/restrict-mail-send.ps1 -AppId 66666666-7777-4888-9999-000000000000"
        " -ObjectId 77777777-8888-4999-8000-111111111111 -Sender notices@contoso.example"
    ) in lines
    assert any("PARTNER_CENTER_REFRESH_TOKEN" in line for line in lines)
