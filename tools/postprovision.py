"""azd's postprovision hook (azure.yaml): after ``azd provision`` / ``azd up``, print where the portal is
and the steps no template can take for the partner (they need a person with the right role), in order.

azd runs it with the deployment's outputs as environment variables (SERVICE_API_URI, ENTRA_APP_CLIENT_ID,
MAIL_IDENTITY_CLIENT_ID, ...) and its own settings (DAP_ENABLED, GRANT_MAIL_SEND, NOTIFY_SENDER).
Standard library only: it runs on the partner engineer's machine, not in the app.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    return default if not value else value in ("1", "true", "yes", "on")


def steps(env: Mapping[str, str]) -> list[str]:
    uri = env.get("SERVICE_API_URI", "").rstrip("/")
    app = env.get("ENTRA_APP_CLIENT_ID", "<ENTRA_APP_CLIENT_ID>")
    sender = env.get("NOTIFY_SENDER", "") or "<NOTIFY_SENDER>"
    out = [
        f"Portal: {uri or '(SERVICE_API_URI not set: run azd provision first)'}",
        f"API: {uri}/api/openapi.json (signed in, app role Relationships.Read)" if uri else "",
        "",
        "Remaining steps (docs/deploy.md, section 4 onwards):",
        f"1. Give people the app roles: Entra admin center > Enterprise applications > app {app} > Users and"
        " groups: Relationships.Read (see), Relationships.Remove (remove access), Relationships.Grant (GDAP requests).",
    ]
    mail_app = env.get("MAIL_IDENTITY_CLIENT_ID", "<MAIL_IDENTITY_CLIENT_ID>")
    mail_object = env.get("MAIL_IDENTITY_PRINCIPAL_ID", "<MAIL_IDENTITY_PRINCIPAL_ID>")
    if _flag(env, "GRANT_MAIL_SEND", False):
        out.append(
            f"2. Mail.Send is granted tenant-wide (GRANT_MAIL_SEND=true): the mail identity {mail_app} can send as"
            f" every mailbox. Limit it to {sender} with an Exchange Online application access policy"
            " (docs/deploy.md, section 4), or set GRANT_MAIL_SEND=false and run tools/restrict-mail-send.ps1."
        )
    else:
        out.append(
            f"2. Let the mail identity send as {sender} only (Exchange Online RBAC for Applications; until then no"
            " mail goes out and enforcement removes nothing):"
            f"\n   pwsh tools/restrict-mail-send.ps1 -AppId {mail_app} -ObjectId {mail_object} -Sender {sender}"
        )
    if _flag(env, "DAP_ENABLED", True):
        out.append(
            "3. DAP: the Partner Center App+User refresh token must be in Key Vault (azd env set"
            " PARTNER_CENTER_REFRESH_TOKEN ...; azd provision); the app keeps it fresh from then on."
        )
    out.append(
        "4. Leave POLICY_MODE=report until the report matches what you expect; then azd env set POLICY_MODE enforce."
    )
    return [line for line in out if line is not None]


def main() -> int:
    print("\n".join(steps(os.environ)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
