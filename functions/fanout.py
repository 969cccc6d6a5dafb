"""The sharded evaluation's queue triggers: one message per customer shard (``shared.evaluation.fanout``).

Messages are plain JSON (host.json: messageEncoding none). Queue triggers scale out: the Functions
host spreads the 16 shard messages of an evaluation over as many instances as it runs. A failing
shard is retried by the host (maxDequeueCount 5), then set aside on ``evaluation-shards-poison``,
where it is recorded and the partner admins are alerted: the evaluation then never becomes visible
(its head is written only once every shard is stored) and the previous one keeps serving.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from functions.triggers import register_poison_trigger, register_queue_trigger
from shared.evaluation.fanout import handle_shard_message, handle_shard_poison

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _log_shard(msg: func.QueueMessage, result: dict[str, Any]) -> None:
    log.info(
        "evaluation %s shard %s: %d rows (%d of 16 shards stored)%s",
        result["evaluationId"],
        result["shard"],
        result["rows"],
        result["shardsDone"],
        "; finished" if result["finished"] else "",
    )


register_queue_trigger(
    bp,
    "evaluation_shard",
    "evaluation-shards",
    lambda services, msg: handle_shard_message(services, msg.get_body()),
    _log_shard,
)


register_poison_trigger(
    bp,
    "evaluation_shard_poison",
    "evaluation-shards-poison",
    handle_shard_poison,
    "evaluation shard message",
    log,
)
