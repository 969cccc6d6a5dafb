"""Write a large, realistic scenario for the emulator.

``python -m tools.emulator.generate --customers 2000 --signins 1000000 --days 90 --seed 7 --out big.json``

Deterministic for a seed (and ``--now``). Sign-ins are streamed to the output, so a million of them
needs little memory. The estate mixes DAP-only, GDAP-only, both, several GDAP relationships and
customers without any active relationship; every GDAP status appears; activity is Zipf-skewed and the
"last active day" per customer is spread so that customers land in every inactivity bucket.

``--noninteractive-per-interactive R`` (default 0: interactive sign-ins only, the output of earlier
versions byte for byte) mixes in non-interactive user sign-ins, as Entra logs them separately (token
refreshes and other sign-ins "performed by a client app or OS components on behalf of a user",
https://learn.microsoft.com/entra/identity/monitoring-health/concept-noninteractive-sign-ins): about R
of them per interactive one, clustered in the hours after it; some customers are active only through
automation (non-interactive sign-ins only); a few carry the combined flags
``b2bCollaboration,serviceProvider``; and a small share of the log is the agents' own sign-ins into the
partner tenant (``crossTenantAccessType`` ``none``). ``--signins`` stays the total number of rows.
"""

from __future__ import annotations

import argparse
import calendar
import io
import itertools
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

DAY = 86400.0

GA = "62e90394-69f5-4237-9190-012177145e10"
ROLES = {
    "Helpdesk Administrator": "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "Intune Administrator": "3a2c62db-5318-420d-8d74-23affee5d9d5",
    "User Administrator": "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "Security Reader": "5d6b6bb7-de71-4623-b4af-96380a352509",
    "Global Reader": "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
    "SharePoint Administrator": "f28a1f50-f6e7-4571-818b-6a12f2af6b6c",
    "Teams Administrator": "69091246-20e8-4a56-aa4d-066075b2a7a8",
    "License Administrator": "4d6ac14f-3453-41d0-bef9-a3e0c569773a",
}
ROLE_IDS = list(ROLES.values())

STATUSES = (
    "active",
    "approvalPending",
    "created",
    "terminationRequested",
    "terminating",
    "terminated",
    "expired",
    "expiring",
    "activating",
)

EN_PREFIXES = (
    "Adatum",
    "Contoso",
    "Fabrikam",
    "Northwind",
    "Tailspin",
    "Wingtip",
    "Woodgrove",
    "Litware",
    "Proseware",
    "Relecloud",
    "Lamna",
    "Munson",
    "Fourth Coffee",
    "Alpine Ski",
    "Blue Yonder",
    "Coho Winery",
    "Consolidated",
    "Graphic Design",
    "Humongous",
    "Lucerne",
    "Margie's",
    "Trey Research",
    "VanArsdel",
    "Wide World",
    "Datum",
    "Bellows",
    "Best For You",
    "City Power",
    "Fincher",
    "Southridge",
    "Tasmanian",
    "Boulder Creek",
    "Cascade",
    "Evergreen",
    "Harborview",
    "Ironwood",
    "Juniper",
    "Keystone",
    "Lakeshore",
    "Meridian",
    "Northstar",
    "Oakridge",
    "Pinnacle",
    "Quarry",
    "Redwood",
    "Silverline",
    "Summit",
    "Tidewater",
    "Upland",
    "Vantage",
    "Westbrook",
    "Yellowstone",
    "Zephyr",
    "Brightwater",
    "Clearview",
    "Driftwood",
    "Foxglove",
    "Granite Peak",
)
EN_SUFFIXES = (
    "Ltd",
    "Inc",
    "Corporation",
    "Group",
    "Holdings",
    "Systems",
    "Partners",
    "Logistics",
    "Industries",
    "Consulting",
    "Labs",
    "Foods",
    "Health",
    "Manufacturing",
    "Retail",
    "Energy",
    "Bank",
    "Insurance",
)
EN_QUALIFIERS = (
    "North America",
    "Europe",
    "APAC",
    "Japan",
    "UK",
    "Germany",
    "Canada",
    "West",
    "East",
    "International",
    "Services",
    "Trading",
)
JP_STEMS = (
    ("山田", "yamada"),
    ("東京", "tokyo"),
    ("大阪", "osaka"),
    ("名古屋", "nagoya"),
    ("横浜", "yokohama"),
    ("京都", "kyoto"),
    ("神戸", "kobe"),
    ("札幌", "sapporo"),
    ("福岡", "fukuoka"),
    ("仙台", "sendai"),
    ("広島", "hiroshima"),
    ("北海", "hokkai"),
    ("日本", "nihon"),
    ("中央", "chuo"),
    ("新日本", "shinnihon"),
    ("富士", "fuji"),
    ("桜", "sakura"),
    ("青葉", "aoba"),
    ("松本", "matsumoto"),
    ("高橋", "takahashi"),
    ("佐藤", "sato"),
    ("鈴木", "suzuki"),
    ("田中", "tanaka"),
    ("伊藤", "ito"),
    ("渡辺", "watanabe"),
    ("三和", "sanwa"),
    ("大和", "yamato"),
    ("瑞穂", "mizuho"),
    ("朝日", "asahi"),
    ("光", "hikari"),
)
JP_INDUSTRIES = (
    ("商事", "shoji"),
    ("電機", "denki"),
    ("工業", "kogyo"),
    ("建設", "kensetsu"),
    ("物流", "butsuryu"),
    ("製作所", "seisakusho"),
    ("食品", "shokuhin"),
    ("システム", "system"),
    ("不動産", "fudosan"),
    ("精密", "seimitsu"),
    ("化学", "kagaku"),
    ("薬品", "yakuhin"),
    ("運輸", "unyu"),
    ("印刷", "insatsu"),
    ("ホールディングス", "hd"),
    ("テクノロジー", "tech"),
    ("産業", "sangyo"),
    ("銀行", "bank"),
    ("ソリューションズ", "solutions"),
    ("製薬", "seiyaku"),
)
JP_BRANCHES = (
    ("関東", "kanto"),
    ("関西", "kansai"),
    ("九州", "kyushu"),
    ("東北", "tohoku"),
    ("中部", "chubu"),
    ("北陸", "hokuriku"),
    ("四国", "shikoku"),
    ("沖縄", "okinawa"),
)
CULTURES = (
    ("ja-JP", 55),
    ("en-US", 30),
    ("en-GB", 5),
    ("de-DE", 4),
    ("fr-FR", 3),
    ("zh-CN", 2),
    ("ko-KR", 1),
)
JP_GIVEN = (
    ("太郎", "taro"),
    ("花子", "hanako"),
    ("健", "ken"),
    ("美咲", "misaki"),
    ("翔", "sho"),
    ("陽菜", "hina"),
    ("大輔", "daisuke"),
    ("由美", "yumi"),
    ("拓也", "takuya"),
    ("直子", "naoko"),
)
EN_GIVEN = (
    "Alex",
    "Sam",
    "Jordan",
    "Taylor",
    "Morgan",
    "Casey",
    "Jamie",
    "Riley",
    "Avery",
    "Quinn",
    "Drew",
    "Robin",
    "Chris",
    "Pat",
    "Dana",
)
EN_FAMILY = (
    "Smith",
    "Johnson",
    "Brown",
    "Garcia",
    "Miller",
    "Davis",
    "Wilson",
    "Moore",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
    "King",
    "Wright",
    "Hill",
)
APPS = (
    ("Microsoft 365 admin center", 40),
    ("Azure Portal", 20),
    ("Microsoft Entra admin center", 12),
    ("Microsoft Exchange Online", 10),
    ("Microsoft Graph PowerShell", 10),
    ("Microsoft Intune", 8),
)

MULTI_STATUSES = (
    ("active", 40),
    ("terminated", 20),
    ("expired", 15),
    ("expiring", 15),
    ("terminationRequested", 5),
    ("terminating", 5),
)
INACTIVE_STATUSES = (
    ("terminated", 35),
    ("expired", 25),
    ("approvalPending", 20),
    ("created", 12),
    ("activating", 8),
)
CATEGORIES = (("dap_only", 15), ("gdap_only", 35), ("both", 12), ("multi_gdap", 13), ("inactive", 25))
INTERACTIVE = "interactiveUser"
NON_INTERACTIVE = "nonInteractiveUser"
# Most partner activity is non-interactive (refresh tokens, token exchange: AOBO, PowerShell, MSP tools).
DEFAULT_NONINTERACTIVE = 4.0
AUTOMATION_ONLY_SHARE = 0.12  # of active customers, with --noninteractive-per-interactive > 0


AZURE_SHARE = (
    0.25  # customers with DAP whose partner provisioned Azure subscriptions (Owner through Admin Agents)
)
AZURE_ROLES = {
    "owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
}


def azure_subscriptions(
    tenant_id: str, name: str, dap: dict[str, Any] | None, rels: list[dict[str, Any]], admin_agents: str
) -> list[dict[str, Any]]:
    """Azure subscriptions the partner provisioned for a customer: its Admin Agents group (a foreign
    principal there) is Owner (Azure CSP), sometimes a GDAP group holds a role too, and the customer's
    own user is Owner as well. Drawn from a generator of the customer's own, so the rest of the estate
    is unchanged."""
    if dap is None or not admin_agents:
        return []
    rng = random.Random(f"azure-{tenant_id}")
    if rng.random() >= AZURE_SHARE:
        return []
    foreign = admin_agents
    groups = sorted({a["groupId"] for r in rels for a in r.get("accessAssignments", [])})
    out = []
    for k in range(rng.choice((1, 1, 2))):
        sid = _guid(rng)
        assignments = [
            {
                "name": _guid(rng),
                "roleDefinitionId": AZURE_ROLES["owner"],
                "principalId": foreign,
                "principalType": "ForeignGroup",
            },
            {
                "name": _guid(rng),
                "roleDefinitionId": AZURE_ROLES["owner"],
                "principalId": _guid(rng),
                "principalType": "User",
            },
        ]
        if groups and rng.random() < 0.5:
            assignments.append(
                {
                    "name": _guid(rng),
                    "roleDefinitionId": AZURE_ROLES[rng.choice(("contributor", "reader"))],
                    "principalId": groups[0],
                    "principalType": "ForeignGroup",
                    "scope": f"/subscriptions/{sid}/resourceGroups/rg-{k + 1}",
                }
            )
        out.append(
            {
                "subscriptionId": sid,
                "displayName": f"{name} Azure plan {k + 1}".strip(),
                "state": "Enabled",
                "roleAssignments": assignments,
            }
        )
    return out


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    total = sum(w for _, w in table)
    x = rng.random() * total
    for value, w in table:
        x -= w
        if x < 0:
            return value
    return table[-1][0]


def _guid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def _iso(epoch: float) -> str:
    whole = int(epoch)
    ms = int(round((epoch - whole) * 1000))
    if ms == 1000:
        whole, ms = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def _dt(epoch: float | None) -> str | None:
    return None if epoch is None else _iso(epoch)


@dataclass
class Profile:
    """How a customer behaves: relationship category and when its agents last signed in."""

    category: str
    last_active_days: int | None  # None = no sign-in within the window
    recent: bool  # relationship established in the last 7 days
    sign_ins: int = 0
    agents: list[str] = field(default_factory=list)


class Generator:
    def __init__(
        self,
        customers: int,
        signins: int,
        days: int,
        seed: int,
        now: datetime,
        retention_days: int,
        agents: int | None,
        noninteractive_per_interactive: float = DEFAULT_NONINTERACTIVE,
    ) -> None:
        if noninteractive_per_interactive < 0:
            raise ValueError("noninteractive_per_interactive must be >= 0")
        self.rng = random.Random(seed)
        self.n_customers = customers
        self.n_signins = signins
        self.noninteractive = float(noninteractive_per_interactive)
        # the agents' own sign-ins into the partner tenant (crossTenantAccessType none), only in the mix
        self.n_home = signins // 50 if self.noninteractive > 0 else 0
        self.days = days
        self.now = now.astimezone(UTC)
        self.now_epoch = float(calendar.timegm(self.now.utctimetuple())) + self.now.microsecond / 1e6
        self.retention_days = retention_days
        self.n_agents = agents if agents is not None else max(10, customers // 20)
        self._names: set[str] = set()
        self._domains: set[str] = set()
        self._rel_names: set[str] = set()

    # ---- partner side

    def partner(self) -> dict[str, Any]:
        return {
            "tenantId": _guid(self.rng),
            "displayName": "Contoso Cloud Partners KK",
            "senderMailbox": "dap-monitor@contoso-partner.example",
            "verifiedDomains": ["contoso-partner.example", "contosopartner.onmicrosoft.com"],
        }

    def groups(self) -> list[dict[str, Any]]:
        names = [
            "AdminAgents",
            "HelpdeskAgents",
            "SalesAgents",
            "GDAP-Tier1-Helpdesk",
            "GDAP-Tier2-Exchange",
            "GDAP-Tier3-Security",
            "GDAP-Intune",
        ]
        return [{"id": _guid(self.rng), "displayName": n} for n in names]

    def agents(self, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        tier_groups = [g["id"] for g in groups[3:]]
        for i in range(self.n_agents):
            if self.rng.random() < 0.5:
                (family, family_r), (given, given_r) = (
                    self.rng.choice(JP_STEMS[15:25]),
                    self.rng.choice(JP_GIVEN),
                )
                display = f"{family} {given}"
                upn_local = f"{given_r}.{family_r}"
            else:
                given, family = self.rng.choice(EN_GIVEN), self.rng.choice(EN_FAMILY)
                display = f"{given} {family}"
                upn_local = f"{given}.{family}".lower()
            if i == 0:
                member = [groups[0]["id"]]
            elif i == 1:
                member = [groups[1]["id"]]
            else:
                r = self.rng.random()
                member = [groups[0]["id"]] if r < 0.25 else [groups[1]["id"]] if r < 0.55 else []
                member += self.rng.sample(tier_groups, self.rng.randint(0 if member else 1, 2))
            out.append(
                {
                    "id": _guid(self.rng),
                    "userPrincipalName": f"{upn_local}{i}@contoso-partner.example",
                    "displayName": display,
                    "groupIds": member,
                }
            )
        return out

    # ---- customers

    def _name(self, culture: str) -> tuple[str, str]:
        for attempt in range(200):
            if culture == "ja-JP" and self.rng.random() < 0.9:
                (stem, stem_r), (ind, ind_r) = self.rng.choice(JP_STEMS), self.rng.choice(JP_INDUSTRIES)
                name = f"株式会社{stem}{ind}" if self.rng.random() < 0.6 else f"{stem}{ind}株式会社"
                slug = f"{stem_r}{ind_r}"
                if attempt >= 20:
                    branch, branch_r = self.rng.choice(JP_BRANCHES)
                    name, slug = f"{name} {branch}支社", f"{slug}{branch_r}"
            else:
                prefix, suffix = self.rng.choice(EN_PREFIXES), self.rng.choice(EN_SUFFIXES)
                name = f"{prefix} {suffix}"
                slug = "".join(ch for ch in f"{prefix}{suffix}".lower() if ch.isalnum())
                if attempt >= 20:
                    qual = self.rng.choice(EN_QUALIFIERS)
                    name, slug = f"{name} {qual}", slug + "".join(ch for ch in qual.lower() if ch.isalnum())
            if attempt >= 100:
                name, slug = f"{name} {attempt}", f"{slug}{attempt}"
            if name not in self._names:
                self._names.add(name)
                return name, slug
        raise RuntimeError("could not find a unique customer name")

    def _domain(self, slug: str) -> str:
        base = slug[:40]
        candidate = base
        while candidate in self._domains:
            candidate = f"{base}{self.rng.randint(2, 9999)}"
        self._domains.add(candidate)
        return candidate

    def _profiles(self) -> list[Profile]:
        rng = self.rng
        profiles = []
        for _ in range(self.n_customers):
            category = _weighted(rng, CATEGORIES)
            r = rng.random()
            last: int | None
            if r < 0.15:
                last = None
            elif r < 0.73:
                last = int(rng.random() ** 2 * min(30, self.days))  # skewed towards recent
            elif r < 0.87:
                last = rng.randint(30, 60)
            else:
                last = rng.randint(61, 90)
            if last is not None and last >= self.days:
                last = rng.randint(0, max(0, self.days - 1))
            recent = (last is None or last < 30) and rng.random() < 0.07
            profiles.append(Profile(category, last, recent))
        # make sure every bucket is represented among monitored customers
        monitored = [p for p in profiles if p.category != "inactive"]
        forced: list[int | None] = [0, 45, 75, None]
        for p, last in zip(monitored, forced, strict=False):
            if last is None or last < self.days:
                p.last_active_days, p.recent = last, False
        self._distribute_sign_ins(profiles)
        return profiles

    def _distribute_sign_ins(self, profiles: list[Profile]) -> None:
        active = [p for p in profiles if p.last_active_days is not None]
        self.rng.shuffle(active)
        budget = self.n_signins - self.n_home
        if budget < len(active):
            for p in active[budget:]:
                p.last_active_days = None
            active = active[:budget]
        if not active:
            return
        weights = [1.0 / (i + 1) ** 1.1 for i in range(len(active))]
        total = sum(weights)
        remaining = budget - len(active)
        counts = [1 + int(remaining * w / total) for w in weights]
        counts[0] += budget - sum(counts)
        for p, c in zip(active, counts, strict=True):
            p.sign_ins = c

    def _rel_name(self, slug: str) -> str:
        if self.rng.random() < 0.1:
            name = f"MLT_{_guid(self.rng)}"
        else:
            name = f"GDAP-{slug[:30]}-{self.rng.randint(1, 99)}"
        while name in self._rel_names:
            name = f"GDAP-{slug[:30]}-{self.rng.randint(100, 99999)}"
        self._rel_names.add(name)
        return name

    def _relationship(
        self,
        tenant_id: str,
        slug: str,
        status: str,
        profile: Profile,
        groups: list[dict[str, Any]],
        recent: bool = False,
    ) -> dict[str, Any]:
        rng = self.rng
        now = self.now_epoch
        duration_days = rng.choice((730, 730, 730, 730, 365, 180, 90))
        old_min = self.days + 1  # "old" = older than the analysed window
        with_ga = rng.random() < 0.2
        roles = rng.sample(ROLE_IDS, rng.randint(1, 4))
        if with_ga:
            roles.insert(0, GA)
        auto = "PT0S" if with_ga or rng.random() < 0.5 else "P180D"
        created: float
        activated: float | None = None
        end: float | None = None
        if status in ("active", "expiring", "terminationRequested", "terminating"):
            if status == "expiring" or (status == "active" and rng.random() < 0.12):
                duration_days = rng.choice((730, 365))
                left = rng.choice((0.5, 3.0, 6.0, 20.0, 27.0)) if status == "active" else rng.uniform(1, 29)
                end = now + left * DAY
                activated = end - duration_days * DAY
            elif recent:
                activated = now - rng.uniform(0.1, 6.9) * DAY
            else:
                if duration_days <= old_min + 1:
                    duration_days = 730
                low = old_min if (profile.last_active_days is None or profile.last_active_days >= 30) else 8
                activated = now - rng.uniform(low, max(low + 1, duration_days - 2)) * DAY
            end = end if end is not None else activated + duration_days * DAY
            created = activated - rng.uniform(0.05, 3) * DAY
        elif status == "terminated":
            activated = now - rng.uniform(old_min, old_min + 700) * DAY
            end = min(now - rng.uniform(1, 200) * DAY, activated + duration_days * DAY)
            end = max(end, activated + DAY)
            created = activated - rng.uniform(0.05, 3) * DAY
        elif status == "expired":
            end = now - rng.uniform(1, 300) * DAY
            activated = end - duration_days * DAY
            created = activated - rng.uniform(0.05, 3) * DAY
        elif status == "approvalPending":
            created = now - rng.uniform(0.1, 60) * DAY
        elif status == "activating":
            created = now - rng.uniform(0.01, 1) * DAY
        else:  # created
            created = now - rng.uniform(0.01, 30) * DAY
        rel_id = f"{_guid(rng)}-{tenant_id}"
        assignments = []
        if status in ("active", "expiring", "terminationRequested", "terminating", "terminated", "expired"):
            aa_status = "active" if status not in ("terminated", "expired") else "deleted"
            for group in rng.sample(groups[:2] + groups[3:], rng.randint(1, 3)):
                subset = rng.sample(roles, rng.randint(1, len(roles)))
                assignments.append(
                    {"id": _guid(rng), "groupId": group["id"], "roles": subset, "status": aa_status}
                )
        return {
            "id": rel_id,
            "displayName": self._rel_name(slug),
            "status": status,
            "duration": f"P{duration_days}D",
            "createdDateTime": _dt(created),
            "activatedDateTime": _dt(activated),
            "endDateTime": _dt(end),
            "autoExtendDuration": auto,
            "roles": roles,
            "accessAssignments": assignments,
        }

    def customers(
        self, profiles: list[Profile], groups: list[dict[str, Any]], agents: list[dict[str, Any]]
    ) -> Iterator[tuple[dict[str, Any], Profile]]:
        rng = self.rng
        agent_ids = [a["id"] for a in agents]
        planted = {
            i * max(1, self.n_customers // len(STATUSES)) % max(1, self.n_customers): s
            for i, s in enumerate(STATUSES)
        }
        for index, profile in enumerate(profiles):
            culture = _weighted(rng, CULTURES)
            name, slug = self._name(culture)
            domain = self._domain(slug)
            tenant_id = _guid(rng)
            mail_domain = f"{domain}.co.jp" if culture == "ja-JP" else f"{domain}.example"
            contacts = [
                f"{rng.choice(('admin', 'it', 'it-admin', 'billing', 'soumu', 'info'))}@{mail_domain}"
            ]
            if rng.random() < 0.5:
                contacts.append(f"{rng.choice(('security', 'helpdesk', 'cio', 'ops'))}@{mail_domain}")
            old_start = self.now_epoch - rng.uniform(self.days + 1, 2500) * DAY
            dap: dict[str, Any] | None = None
            statuses: list[str] = []
            cat = profile.category
            if cat in ("dap_only", "both"):
                dap = {"enabled": True, "startDateTime": _dt(old_start)}
            if cat in ("gdap_only", "both"):
                statuses = ["active"]
            elif cat == "multi_gdap":
                statuses = ["active"] + [_weighted(rng, MULTI_STATUSES) for _ in range(rng.randint(1, 3))]
            elif cat == "inactive":
                kind = rng.random()
                if kind < 0.35:
                    dap = {"enabled": False, "startDateTime": _dt(old_start)}
                elif kind < 0.75:
                    statuses = [_weighted(rng, INACTIVE_STATUSES) for _ in range(rng.randint(1, 2))]
                # else: reseller relationship only, no delegated access at all
            if index in planted:
                statuses.append(planted[index])
            rels = [
                self._relationship(
                    tenant_id, slug, s, profile, groups, recent=profile.recent and s == "active" and k == 0
                )
                for k, s in enumerate(statuses)
            ]
            profile.agents = rng.sample(agent_ids, min(len(agent_ids), rng.randint(1, 4)))
            customer = {
                "tenantId": tenant_id,
                "displayName": name,
                "defaultDomainName": f"{domain}.onmicrosoft.com",
                "culture": culture,
                "contacts": contacts,
                "dap": dap,
                "gdapRelationships": rels,
            }
            admin_agents = next((g["id"] for g in groups if g["displayName"] == "AdminAgents"), "")
            subscriptions = azure_subscriptions(tenant_id, name, dap, rels, admin_agents)
            if subscriptions:
                customer["azureSubscriptions"] = subscriptions
            yield customer, profile

    # ---- sign-ins

    def sign_ins(self, tenant_id: str, profile: Profile) -> Iterator[str]:
        if profile.last_active_days is None or profile.sign_ins <= 0:
            return
        if self.noninteractive > 0:
            yield from self._mixed_sign_ins(tenant_id, profile)
            return
        rng = self.rng
        now = self.now_epoch
        window_start = now - self.days * DAY + 60.0
        last = profile.last_active_days
        latest = now - last * DAY - rng.uniform(0, 0.95) * DAY
        latest = max(latest, window_start)
        agents = profile.agents
        apps = [a for a, _ in APPS]
        app_weights = [w for _, w in APPS]
        for k in range(profile.sign_ins):
            if k == 0:
                t, err, cta = latest, 0, "serviceProvider"
            else:
                t = rng.uniform(window_start, latest)
                r = rng.random()
                if r < 0.03:
                    err, cta = rng.choice((50076, 50126)), "serviceProvider"
                elif r < 0.06:
                    err, cta = 0, "b2bCollaboration"
                else:
                    err, cta = 0, "serviceProvider"
            app = rng.choices(apps, app_weights)[0]
            yield (
                f'{{"id":"{_guid(rng)}","createdDateTime":"{_iso(t)}","userId":"{rng.choice(agents)}",'
                f'"resourceTenantId":"{tenant_id}","crossTenantAccessType":"{cta}","errorCode":{err},'
                f'"appDisplayName":"{app}"}}'
            )

    def _mixed_sign_ins(self, tenant_id: str, profile: Profile) -> Iterator[str]:
        """A customer's sign-ins with non-interactive ones mixed in (``--noninteractive-per-interactive``).

        The latest sign-in is still a successful serviceProvider one at the profile's last active day, so the
        customer lands in the same inactivity bucket; everything else lies between the window start and it.
        """
        rng = self.rng
        window_start = self.now_epoch - self.days * DAY + 60.0
        latest = self.now_epoch - (profile.last_active_days or 0) * DAY - rng.uniform(0, 0.95) * DAY
        latest = max(latest, window_start)
        total = profile.sign_ins
        automation_only = rng.random() < AUTOMATION_ONLY_SHARE
        interactive = 0 if automation_only else min(total, max(1, round(total / (1 + self.noninteractive))))
        apps = [a for a, _ in APPS]
        app_weights = [w for _, w in APPS]
        sessions: list[float] = []
        for k in range(total):
            is_interactive = k < interactive
            if k == 0:
                t, err, cta = latest, 0, "serviceProvider"
            elif is_interactive or not sessions:
                t = rng.uniform(window_start, latest)
                err, cta = self._mixed_outcome(interactive=is_interactive)
            else:  # a token refresh in the hours after an interactive session (or after the last one)
                t = min(latest, rng.choice(sessions) + rng.uniform(60.0, 8 * 3600.0))
                err, cta = self._mixed_outcome(interactive=False)
            if is_interactive:
                sessions.append(t)
            app = rng.choices(apps, app_weights)[0]
            kind = INTERACTIVE if is_interactive else NON_INTERACTIVE
            yield (
                f'{{"id":"{_guid(rng)}","createdDateTime":"{_iso(t)}","userId":"{rng.choice(profile.agents)}",'
                f'"resourceTenantId":"{tenant_id}","crossTenantAccessType":"{cta}",'
                f'"signInEventTypes":["{kind}"],"errorCode":{err},"appDisplayName":"{app}"}}'
            )

    def _mixed_outcome(self, interactive: bool) -> tuple[int, str]:
        r = self.rng.random()
        if r < 0.03:
            failures = (
                (50076, 50126) if interactive else (50173, 70044)
            )  # MFA / password; expired grant, session
            return self.rng.choice(failures), "serviceProvider"
        if r < 0.05:
            return 0, "b2bCollaboration"
        if r < 0.08:
            return 0, "b2bCollaboration,serviceProvider"
        return 0, "serviceProvider"

    def home_sign_ins(self, partner_tenant_id: str, agents: list[dict[str, Any]]) -> Iterator[str]:
        """The agents' sign-ins into the partner tenant itself: crossTenantAccessType none, never qualifying."""
        rng = self.rng
        window_start = self.now_epoch - self.days * DAY + 60.0
        ids = [a["id"] for a in agents]
        for _ in range(self.n_home):
            kind = INTERACTIVE if rng.random() < 1 / (1 + self.noninteractive) else NON_INTERACTIVE
            err = rng.choice((50126, 50076)) if rng.random() < 0.03 else 0
            yield (
                f'{{"id":"{_guid(rng)}","createdDateTime":"{_iso(rng.uniform(window_start, self.now_epoch))}",'
                f'"userId":"{rng.choice(ids)}","resourceTenantId":"{partner_tenant_id}",'
                f'"crossTenantAccessType":"none","signInEventTypes":["{kind}"],"errorCode":{err},'
                f'"appDisplayName":"{rng.choice(("Microsoft Teams", "Outlook", "Microsoft 365 admin center"))}"}}'
            )

    # ---- output

    def write(self, out: IO[str]) -> None:
        partner = self.partner()
        groups = self.groups()
        agents = self.agents(groups)
        profiles = self._profiles()
        w = out.write
        w("{\n")
        w(f' "now": {json.dumps(_iso(self.now_epoch))},\n')
        w(f' "signInRetentionDays": {self.retention_days},\n')
        w(f' "partner": {json.dumps(partner, ensure_ascii=False)},\n')
        w(' "groups": [\n  ' + ",\n  ".join(json.dumps(g) for g in groups) + "\n ],\n")
        w(' "agents": [\n  ' + ",\n  ".join(json.dumps(a, ensure_ascii=False) for a in agents) + "\n ],\n")
        w(' "customers": [')
        pending: list[tuple[str, Profile]] = []
        for i, (customer, profile) in enumerate(self.customers(profiles, groups, agents)):
            w(("\n  " if i == 0 else ",\n  ") + json.dumps(customer, ensure_ascii=False))
            pending.append((customer["tenantId"], profile))
        w("\n ],\n")
        w(' "signIns": [')
        first = True
        buf: list[str] = []
        streams = [self.sign_ins(tenant_id, profile) for tenant_id, profile in pending]
        if self.n_home:
            streams.append(self.home_sign_ins(partner["tenantId"], agents))
        for line in itertools.chain.from_iterable(streams):
            buf.append(line)
            if len(buf) >= 20000:
                w(("\n  " if first else ",\n  ") + ",\n  ".join(buf))
                first = False
                buf.clear()
        if buf:
            w(("\n  " if first else ",\n  ") + ",\n  ".join(buf))
        w("\n ]\n}\n")


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(second=0, microsecond=0)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def with_lost_access(scenario: dict[str, Any], per_cause: int = 1) -> dict[str, Any]:
    """Add the cases of access lost outside the product (``make demo`` shows them): ``per_cause`` customers
    each whose customer removes DAP while it is in use, whose DAP goes after 90+ days unused (as Microsoft
    removes it), whose customer terminates GDAP, and whose GDAP relationship expires. The customers' acts
    are scenario ``events`` 30 minutes after ``now`` and the expiries an hour after it, so a sync at ``now``
    sees the access and one two hours later sees it gone. Deterministic for a scenario."""
    now = datetime.fromisoformat(str(scenario["now"]).replace("Z", "+00:00"))
    last: dict[str, str] = {}
    for s in scenario.get("signIns") or []:
        if s.get("errorCode", 0) == 0 and "serviceProvider" in str(s.get("crossTenantAccessType", "")):
            tenant = str(s["resourceTenantId"])
            last[tenant] = max(last.get(tenant, ""), str(s["createdDateTime"]))
    recent = _iso((now - timedelta(days=30)).timestamp())
    stale = _iso((now - timedelta(days=120)).timestamp())
    taken: set[str] = set()
    events: list[dict[str, Any]] = []
    at = _iso((now + timedelta(minutes=30)).timestamp())

    def active_gdap(c: dict[str, Any]) -> list[dict[str, Any]]:
        return [r for r in c.get("gdapRelationships") or [] if r.get("status") == "active"]

    def dap_on(c: dict[str, Any]) -> bool:
        return bool((c.get("dap") or {}).get("enabled"))

    def pick(test: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        chosen = [c for c in sorted(scenario["customers"], key=lambda c: c["tenantId"]) if test(c)]
        chosen = [c for c in chosen if c["tenantId"] not in taken][:per_cause]
        taken.update(c["tenantId"] for c in chosen)
        return chosen

    for c in pick(lambda c: dap_on(c) and not active_gdap(c) and last.get(c["tenantId"], "") >= recent):
        events.append({"at": at, "action": "removeDap", "tenantId": c["tenantId"]})
    for c in pick(
        lambda c: (
            dap_on(c)
            and not active_gdap(c)
            and last.get(c["tenantId"], "") < stale
            and str(c["dap"].get("startDateTime") or "") < stale
        )
    ):
        events.append({"at": at, "action": "removeDap", "tenantId": c["tenantId"]})
    for c in pick(
        lambda c: not dap_on(c) and len(active_gdap(c)) == 1 and last.get(c["tenantId"], "") >= recent
    ):
        events.append({"at": at, "action": "terminateGdap", "relationshipId": active_gdap(c)[0]["id"]})
    for c in pick(
        lambda c: (
            not dap_on(c)
            and len(active_gdap(c)) == 1
            and active_gdap(c)[0].get("autoExtendDuration") in ("PT0S", "P0D", None)
        )
    ):
        active_gdap(c)[0]["endDateTime"] = _iso((now + timedelta(hours=1)).timestamp())
    scenario["events"] = [*(scenario.get("events") or []), *events]
    return scenario


def command(**options: object) -> list[str]:
    """The command line that runs this generator as its own process, ``options`` as its flags in order
    (``retention_days=90``: ``--retention-days 90``)."""
    flags = [(f"--{name.replace('_', '-')}", str(value)) for name, value in options.items()]
    return [sys.executable, "-m", "tools.emulator.generate", *(x for flag in flags for x in flag)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.emulator.generate", description="Write a large realistic emulator scenario."
    )
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--signins", type=int, required=True)
    parser.add_argument("--days", type=int, default=90, help="sign-ins lie within [now - days, now]")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--now", help="ISO timestamp (default: current UTC time truncated to the minute)")
    parser.add_argument("--retention-days", type=int, help="signInRetentionDays (default: --days)")
    parser.add_argument("--agents", type=int, help="number of partner agents (default max(10, customers/20))")
    parser.add_argument(
        "--noninteractive-per-interactive",
        type=float,
        default=DEFAULT_NONINTERACTIVE,
        metavar="R",
        help="mix in about R non-interactive sign-ins per interactive one (default 0: none)",
    )
    parser.add_argument(
        "--lost-access",
        type=int,
        default=0,
        metavar="N",
        help="N customers per cause of access lost outside the product (scenario events; default 0)",
    )
    parser.add_argument("--out", help="output file (default stdout)")
    args = parser.parse_args(argv)
    if args.customers < 1 or args.signins < 0 or args.days < 1:
        parser.error("--customers >= 1, --signins >= 0 and --days >= 1 are required")
    if args.noninteractive_per_interactive < 0:
        parser.error("--noninteractive-per-interactive must be >= 0")
    try:
        now = _parse_now(args.now)
    except ValueError:
        parser.error(f"--now is not an ISO timestamp: {args.now}")
    gen = Generator(
        args.customers,
        args.signins,
        args.days,
        args.seed,
        now,
        args.retention_days if args.retention_days is not None else args.days,
        args.agents,
        noninteractive_per_interactive=args.noninteractive_per_interactive,
    )
    if args.lost_access > 0:
        buffer = io.StringIO()
        gen.write(buffer)
        scenario = with_lost_access(json.loads(buffer.getvalue()), args.lost_access)
        text = json.dumps(scenario, ensure_ascii=False)
        if args.out:
            with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
        else:
            sys.stdout.write(text)
        return 0
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
            gen.write(fh)
    else:
        sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
        gen.write(sys.stdout)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
