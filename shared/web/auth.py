"""Who is calling: the App Service Authentication (Easy Auth) principal, and the two app roles.

Easy Auth validates the user's token and passes the result as ``X-MS-CLIENT-PRINCIPAL``: base64 of
``{"auth_typ": ..., "claims": [{"typ": ..., "val": ...}], "name_typ": ..., "role_typ": ...}``. App
roles arrive as claims of type ``roles``. Easy Auth removes that header from incoming requests, so in
Azure it can only come from the platform; anything we cannot read is treated as no principal at all
(fail closed), never as a partial one.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

READ_ROLE = "Relationships.Read"
REMOVE_ROLE = "Relationships.Remove"
# Granting or prolonging access (GDAP requests and invitations, re-establishment, auto-extend) is a
# different act from removing it: it has its own role.
GRANT_ROLE = "Relationships.Grant"
PRINCIPAL_HEADER = "x-ms-client-principal"
MAX_PRINCIPAL_BYTES = 16 * 1024
NAME_CLAIMS = (
    "preferred_username",
    "name",
    "upn",
    "email",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
)
OBJECT_ID_CLAIMS = ("oid", "http://schemas.microsoft.com/identity/claims/objectidentifier")


@dataclass(frozen=True)
class Principal:
    name: str
    object_id: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)
    local_operator: bool = False

    def has(self, role: str) -> bool:
        # Remove and Grant imply Read: a remover or granter has to see what they act on.
        if role == READ_ROLE:
            return bool({READ_ROLE, REMOVE_ROLE, GRANT_ROLE} & self.roles)
        return role in self.roles

    @property
    def display(self) -> str:
        """Who requested something, as recorded in the audit trail."""
        if self.object_id and self.object_id not in self.name:
            return f"{self.name} ({self.object_id})" if self.name else self.object_id
        return self.name or "unknown"


LOCAL_OPERATOR = Principal(
    name="local-operator", roles=frozenset({READ_ROLE, REMOVE_ROLE, GRANT_ROLE}), local_operator=True
)


def parse_principal(header: str | None) -> Principal | None:
    """The principal of an ``X-MS-CLIENT-PRINCIPAL`` value, or None if absent or malformed."""
    if not header or len(header) > MAX_PRINCIPAL_BYTES:
        return None
    text = header.strip()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        document = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):  # Recursion: nested arrays
        return None
    if not isinstance(document, dict):
        return None
    claims = document.get("claims")
    if not isinstance(claims, list) or not claims:
        return None
    pairs: list[tuple[str, str]] = []
    for claim in claims:
        if not isinstance(claim, dict):
            return None
        typ, val = claim.get("typ"), claim.get("val")
        if not isinstance(typ, str) or not isinstance(val, str):
            return None
        pairs.append((typ, val))
    role_types = {"roles"}
    role_typ = document.get("role_typ")
    if isinstance(role_typ, str) and role_typ:
        role_types.add(role_typ)
    roles = frozenset(v for t, v in pairs if t in role_types)
    values = dict(reversed(pairs))  # first occurrence wins
    name_typ = document.get("name_typ")
    name_order = ((name_typ,) if isinstance(name_typ, str) else ()) + NAME_CLAIMS
    name = next((values[t] for t in name_order if values.get(t)), "")
    object_id = next((values[t] for t in OBJECT_ID_CLAIMS if values.get(t)), "")
    if not name and not object_id:
        return None
    return Principal(name=_printable(name)[:256], object_id=_printable(object_id)[:64], roles=roles)


def _printable(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())


def encode_principal(name: str, roles: list[str] | tuple[str, ...], object_id: str = "") -> str:
    """The header value Easy Auth would send (tests and local tooling)."""
    claims = [{"typ": "name", "val": name}, {"typ": "preferred_username", "val": name}]
    if object_id:
        claims.append(
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": object_id}
        )
    claims.extend({"typ": "roles", "val": r} for r in roles)
    document = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(document).encode()).decode()


def principal_header_trusted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the principal header can be believed.

    Only where App Service Authentication is known to be on (App Service sets ``WEBSITE_AUTH_ENABLED``
    when Easy Auth is enabled), because only there does the platform strip a client's own copy of the
    header and put the signed-in user's. Anywhere else -- App Service without Easy Auth, ``serve``, any
    other host -- the header is the caller's own word and every request is anonymous (fail closed);
    ``serve`` acts for a local user only with ``--local-operator`` on loopback.
    """
    env = os.environ if environ is None else environ
    return env.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true"
