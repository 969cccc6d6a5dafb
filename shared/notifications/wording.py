"""Mail in the reader's words: the time zone of the mail's language, and the product's codes and
code-built sentences (policy mode, run names, skip and halt reasons) said in Japanese.

The zone follows the language: a customer's mail is in its billing-profile culture's language, so a
Japanese customer reads Japan's time (JST, UTC+9; Japan has no daylight saving time, so a fixed offset
is exact and needs no time zone database on the host); English mail keeps UTC. Every time says its zone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo

JST = timezone(timedelta(hours=9), "JST")


def zone_of(language: str) -> tzinfo:
    return JST if language == "ja" else UTC


def zone_name(language: str) -> str:
    return "JST" if language == "ja" else "UTC"


MODES = {
    "report": {"en": "report mode", "ja": "レポート モード"},
    "enforce": {"en": "enforce mode", "ja": "適用モード"},
}

# The runs a "failed" alert names (shared.evaluation.run.report_failed_run and its callers).
RUNS = {
    "refresh": {"en": "data refresh", "ja": "データの更新"},
    "evaluation": {"en": "evaluation", "ja": "評価"},
    "removal": {"en": "removal", "ja": "削除"},
    "ingestion": {"en": "sign-in ingestion", "ja": "サインインの取り込み"},
    "sync": {"en": "relationship sync", "ja": "関係の同期"},
}

# Statuses inside reasons: Microsoft's GDAP relationship statuses (delegatedAdminRelationshipStatus,
# https://learn.microsoft.com/en-us/graph/api/resources/delegatedadminrelationship), DAP's as the product
# records it, and a removal's states. The same words as the portal's.
STATUSES_JA = {
    "active": "有効",
    "disabled": "無効",
    "activating": "有効化中",
    "approvalPending": "顧客の承認待ち",
    "approved": "承認済み",
    "created": "作成済み",
    "expired": "期限切れ",
    "expiring": "まもなく期限切れ",
    "terminated": "終了",
    "terminating": "終了処理中",
    "terminationRequested": "終了を要求済み",
    "pending": "保留中",
    "requesting": "要求中",
    "queued": "待機中",
    "requested": "要求済み",
    "completed": "完了",
    "skipped": "スキップ",
    "failed": "失敗",
}


def mode_label(mode: str, language: str = "en") -> str:
    return MODES.get(mode, {}).get(language, mode)


def run_label(run: str, language: str = "en") -> str:
    return RUNS.get(run, {}).get(language, run)


def status_label(status: str, language: str = "en") -> str:
    return STATUSES_JA.get(status, status) if language == "ja" else status


Format = Callable[[dict[str, str]], str]

_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2})$")


def _time(value: str, when_missing: str = "記録なし") -> str:
    if value in ("never", "nowhere"):
        return when_missing
    if not _TIME.match(value):
        return value
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(JST)
    return f"{moment.year}年{moment.month}月{moment.day}日 {moment:%H:%M} JST"


def _states(value: str) -> str:
    return "、".join(detail_ja(part) for part in value.split(", "))


# The sentences the product writes as reasons (removal skips, enforcement holds and halts), as
# shared.removals.worker, shared.evaluation.policy and shared.evaluation.run build them.
REASONS_JA: list[tuple[re.Pattern[str], Format]] = [
    (
        re.compile(r"^excluded: the customer is in EXCLUDED_TENANTS now$"),
        lambda g: "除外: この顧客は現在 EXCLUDED_TENANTS に含まれています",
    ),
    (re.compile(r"^excluded \(EXCLUDED_TENANTS\)$"), lambda g: "除外 (EXCLUDED_TENANTS)"),
    (
        re.compile(r"^no longer active \(status (?P<status>\w+)\)$"),
        lambda g: f"有効ではなくなりました (状態: {status_label(g['status'], 'ja')})",
    ),
    (
        re.compile(r"^no longer active \((?P<states>.*)\)$"),
        lambda g: f"有効ではなくなりました ({_states(g['states'])})",
    ),
    (
        re.compile(r"^a new relationship was established since the evaluation: (?P<names>.+)$"),
        lambda g: f"評価の後に新しい関係が確立されました: {g['names']}",
    ),
    (
        re.compile(r"^signed in since: the store holds a sign-in at (?P<at>\S+) \(after (?P<since>\S+)\)$"),
        lambda g: (
            f"その後サインインあり: {_time(g['at'])} のサインインが保存されています ({_time(g['since'])} より後)"
        ),
    ),
    (
        re.compile(
            r"^signed in since: an agent signed in at (?P<at>\S+) "
            r"\((?P<kind>interactive|non-interactive), after (?P<since>\S+)\)$"
        ),
        lambda g: (
            f"その後サインインあり: エージェントが {_time(g['at'])} にサインインしました "
            f"({'対話型' if g['kind'] == 'interactive' else '非対話型'}、{_time(g['since'])} より後)"
        ),
    ),
    (
        re.compile(
            r"^coverage: the sign-in log held since (?P<from>\S+) proves only (?P<n>\d+) days of inactivity$"
        ),
        lambda g: (
            f"サインイン データの期間不足: {_time(g['from'])} 以降のサインイン ログで証明できる"
            f"非アクティブな日数は {g['n']} 日のみです"
        ),
    ),
    (
        re.compile(r"^removal (?P<id>\S+) for this inactivity stretch is already (?P<status>\w+)$"),
        lambda g: f"この非アクティブ期間の削除はすでに「{status_label(g['status'], 'ja')}」です ({g['id']})",
    ),
    (
        re.compile(
            r"^no partner sign-in for at least (?P<n>\d+) days \(policy: remove after (?P<m>\d+) days\)$"
        ),
        lambda g: f"少なくとも {g['n']} 日間パートナーのサインインなし (ポリシー: {g['m']} 日を超えると削除)",
    ),
    (
        re.compile(
            r"^circuit breaker: (?P<n>\d+) removal candidates, more than MAX_REMOVALS_PER_RUN \((?P<m>\d+)\)$"
        ),
        lambda g: (
            f"サーキット ブレーカー: 削除候補 {g['n']} 件が MAX_REMOVALS_PER_RUN ({g['m']}) を超えています"
        ),
    ),
    (
        re.compile(
            r"^stale: the last successful sign-in ingestion \((?P<at>\S+)\) is more than (?P<h>\d+) hours "
            r"before (?P<asOf>\S+)$"
        ),
        lambda g: (
            f"サインイン データが古い: 最後に成功したサインインの取り込み ({_time(g['at'])}) が "
            f"{_time(g['asOf'])} より {g['h']} 時間以上前です"
        ),
    ),
    (
        re.compile(
            r"^mail: customer notices cannot be sent \((?P<detail>.*)\); nothing is removed until a mail "
            r"goes out again$"
        ),
        lambda g: (
            f"メール: 顧客への通知を送信できません ({g['detail']})。メールを送信できるようになるまで削除しません"
        ),
    ),
    (
        re.compile(r"^not finished in this run \(status (?P<status>\w+)\)$"),
        lambda g: f"この実行では終了していません (状態: {status_label(g['status'], 'ja')})",
    ),
    (
        re.compile(r"^gave up after (?P<n>\d+) attempts(?P<detail>: .*)?$"),
        lambda g: f"{g['n']} 回試行して中止しました{g['detail'] or ''}",
    ),
    (re.compile(r"^nothing to remove$"), lambda g: "削除する対象はありません"),
    (re.compile(r"^no longer listed$"), lambda g: "Microsoft の一覧に表示されなくなりました"),
    (re.compile(r"^the relationship no longer exists$"), lambda g: "関係はもう存在しません"),
    (re.compile(r"^does not include Global Administrator$"), lambda g: "グローバル管理者を含みません"),
]

_PREFIXED = re.compile(r"^(?P<status>skipped|failed|completed|requested): (?P<rest>.+)$")
_DETAIL = re.compile(r"^(?P<type>DAP|GDAP) (?P<name>.+): (?P<what>.+)$")


def reason_ja(text: str) -> str:
    """A reason the product wrote, in Japanese; anything it does not know (an operator's own words, a
    service's error text) as written."""
    for pattern, say in REASONS_JA:
        match = pattern.match(text)
        if match:
            return say({k: v or "" for k, v in match.groupdict().items()})
    prefixed = _PREFIXED.match(text)
    if prefixed:
        return f"{status_label(prefixed['status'], 'ja')}: {reason_ja(prefixed['rest'])}"
    detail = detail_ja(text)
    if detail != text:
        return detail
    # "<customer>: <reason>" (a failed removal's alert names the customer first).
    name, colon, rest = text.partition(": ")
    if colon and (said := reason_ja(rest)) != rest:
        return f"{name}: {said}"
    return text


def detail_ja(text: str) -> str:
    """'DAP Contoso: requested; GDAP Helpdesk: skipped' with each state or note in Japanese."""
    parts = text.split("; ")
    matches = [_DETAIL.match(part) for part in parts]
    if not all(matches):
        return text
    said = []
    for m in matches:
        assert m is not None
        what = m["what"]
        said.append(
            f"{m['type']} {m['name']}: " + (status_label(what, "ja") if what.isalnum() else reason_ja(what))
        )
    return "; ".join(said)


STATUSES_EN = {
    "approvalPending": "waiting for the customer's approval",
    "terminationRequested": "termination requested",
    "unknownFutureValue": "unknown",
}
_STATUS_CODE = re.compile(r"\b(" + "|".join(STATUSES_EN) + r")\b")


def reason_label(text: str | None, language: str = "en") -> str:
    """A reason in the mail's language: Japanese said anew, English as written with Microsoft's
    camel-case statuses in words."""
    if not text:
        return ""
    if language == "ja":
        return reason_ja(str(text))
    return _STATUS_CODE.sub(lambda m: STATUSES_EN[m[1]], str(text))
