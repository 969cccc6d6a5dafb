"""Customer shards: how per-customer data is spread over table partitions and evaluation work.

A customer's shard is the first character of its tenant id (``shared.platform.storage.shard_of``): 16
shards for the GUIDs Microsoft issues. ``Customers``, ``Relationships``, ``LastSignIns`` are
partitioned by it, ``EvaluationRows`` by ``<evaluation>-<shard>``, and ``SignInDays`` rows are
range-keyed by tenant inside each day, so each shard's slice of every table is one partition or
one key range, and a shard's work (``shared.evaluation.fanout``) reads nothing of the other shards.

Shards are *ranges* of keys, not only the 16 hex characters: shard ``0`` starts at the empty string
and shard ``f`` runs to the end, so a key that is not a lower-case GUID still belongs to exactly one
shard and nothing can fall between them.
"""

from __future__ import annotations

from typing import Any

from shared.platform.storage import shard_of

SHARDS: tuple[str, ...] = tuple("0123456789abcdef")


def shard_bounds(shard: str) -> tuple[str | None, str | None]:
    """[lower, upper) of the keys in ``shard``; None = unbounded."""
    index = SHARDS.index(shard)
    lower = None if index == 0 else shard
    upper = None if index == len(SHARDS) - 1 else SHARDS[index + 1]
    return lower, upper


def shard_containing(key: str) -> str:
    """The shard whose range holds ``key`` (a partition key of a shard-keyed table)."""
    for shard in reversed(SHARDS[1:]):
        if key >= shard:
            return shard
    return SHARDS[0]


def shard_of_tenant(tenant_id: str) -> str:
    return shard_containing(shard_of(tenant_id))


def key_range_filter(prop: str, shard: str) -> tuple[str, dict[str, Any]]:
    """An OData filter (and its parameters) selecting ``prop`` values in ``shard``'s range."""
    lower, upper = shard_bounds(shard)
    clauses, params = [], {}
    if lower is not None:
        clauses.append(f"{prop} ge @lo")
        params["lo"] = lower
    if upper is not None:
        clauses.append(f"{prop} lt @hi")
        params["hi"] = upper
    return " and ".join(clauses), params
