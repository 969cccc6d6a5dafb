"""A small OData ``$filter`` parser, enough for the queries Graph accepts on the endpoints we emulate.

The parser produces a tiny AST (:class:`Compare`, :class:`And`, :class:`Or`, :class:`Not`,
:class:`Lambda`). Each endpoint then decides what it supports: the sign-in log accepts a conjunction
of comparisons plus the ``signInEventTypes/any(t: ...)`` lambda (as the real service does), the GDAP
list accepts ``and``/``or``/parentheses over a few properties. Keywords and property names are
matched case-insensitively, like Graph.

Operators follow OData 4.01 (part 2, "Built-in Query Options", 5.1.1): ``eq ne gt ge lt le`` and
``has`` for flags enums (``crossTenantAccessType has 'serviceProvider'``); the lambda operators
``any``/``all`` over a collection property (5.1.1.10), whose range variable names the element inside
the lambda body (``signInEventTypes/any(t: t eq 'nonInteractiveUser')``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

__all__ = [
    "And",
    "Compare",
    "DateTimeLiteral",
    "FilterError",
    "Lambda",
    "Node",
    "Not",
    "Or",
    "conjunction",
    "conjuncts",
    "evaluate",
    "flag_set",
    "format_timestamp",
    "parse_filter",
    "parse_timestamp",
]


class FilterError(ValueError):
    """The filter cannot be parsed or uses something the endpoint does not support."""


@dataclass(frozen=True)
class DateTimeLiteral:
    """An unquoted ISO 8601 DateTimeOffset literal, normalised to the 7-digit UTC form."""

    value: str


@dataclass(frozen=True)
class Compare:
    prop: str  # as written by the caller
    op: str  # eq ne gt ge lt le (lower case)
    value: Any  # str | int | float | bool | None | DateTimeLiteral

    @property
    def key(self) -> str:
        return self.prop.lower()


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class Lambda:
    """``prop/any(var: body)`` or ``prop/all(var: body)``; ``body`` is None for ``prop/any()``."""

    prop: str  # the collection property as written, e.g. "signInEventTypes"
    op: str  # "any" | "all"
    var: str  # the range variable as written, e.g. "t"
    body: Node | None

    @property
    def key(self) -> str:
        return self.prop.lower()


Node = Compare | And | Or | Not | Lambda

_OPS = {"eq", "ne", "gt", "ge", "lt", "le", "has"}
_LAMBDAS = {"any", "all"}

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w-]))
  | (?P<ident>[A-Za-z_@][\w.]*(?:/[A-Za-z_][\w.]*)*)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<colon>:)
    """,
    re.VERBOSE,
)

# A '+' in a UTC offset often arrives as a space (form encoding): "…T00:00:00 09:00".
_PLUS_AS_SPACE_RE = re.compile(r"(\dT\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})")


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp (any number of fractional digits, ``Z`` or offset) as UTC."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    m = re.match(r"^(.*T\d{2}:\d{2}:\d{2})\.(\d+)(.*)$", s)
    if m:  # Python accepts at most 6 fractional digits
        s = f"{m.group(1)}.{(m.group(2) + '000000')[:6]}{m.group(3)}"
    try:
        value = datetime.fromisoformat(s)
    except ValueError as exc:
        raise FilterError(f"'{text}' is not a valid DateTimeOffset") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """Graph's wire form: UTC with exactly 7 fractional digits, e.g. ``2026-11-20T21:00:00.0000000Z``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}0Z"


def _tokens(text: str) -> list[tuple[str, str]]:
    text = _PLUS_AS_SPACE_RE.sub(r"\1+\2", text)
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise FilterError(f"Syntax error at position {pos} in '{text}'.")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "ident" and tok[1].lower() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Node:
        if not self.toks:
            raise FilterError("The $filter expression is empty.")
        node = self.parse_or()
        if self.peek() is not None:
            raise FilterError(f"Syntax error: unexpected '{self.peek()[1]}' in '{self.text}'.")  # type: ignore[index]
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.keyword("or"):
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_unary()]
        while self.keyword("and"):
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_unary(self) -> Node:
        if self.keyword("not"):
            return Not(self.parse_unary())
        tok = self.peek()
        if tok and tok[0] == "lparen":
            self.i += 1
            return self.parse_parenthesised("')' expected")
        return self.parse_compare()

    def parse_parenthesised(self, missing: str) -> Node:
        """An expression up to its closing ``)`` (the ``(`` already read); ``missing`` says what is wrong
        when the ``)`` is not there."""
        node = self.parse_or()
        close = self.peek()
        if not close or close[0] != "rparen":
            raise FilterError(f"Syntax error: {missing} in '{self.text}'.")
        self.i += 1
        return node

    def parse_compare(self) -> Node:
        tok = self.peek()
        if not tok or tok[0] != "ident":
            raise FilterError(f"Syntax error: property expected in '{self.text}'.")
        self.i += 1
        nxt = self.peek()
        if nxt and nxt[0] == "lparen":
            prop, _, op = tok[1].rpartition("/")
            if prop and op.lower() in _LAMBDAS:
                return self.parse_lambda(prop, op.lower())
            raise FilterError(f"Invalid filter clause: the function '{tok[1]}' is not supported.")
        op_tok = self.peek()
        if not op_tok or op_tok[0] != "ident" or op_tok[1].lower() not in _OPS:
            raise FilterError(f"Syntax error: operator expected after '{tok[1]}' in '{self.text}'.")
        self.i += 1
        return Compare(tok[1], op_tok[1].lower(), self.parse_literal())

    def parse_lambda(self, prop: str, op: str) -> Node:
        """After ``prop/any``: ``(`` [var ``:`` body] ``)``."""
        self.i += 1  # the '('
        tok = self.peek()
        if tok and tok[0] == "rparen":
            self.i += 1
            if op == "all":
                raise FilterError(f"Syntax error: '{prop}/all()' needs a lambda expression in '{self.text}'.")
            return Lambda(prop, op, "", None)
        colon = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
        if not tok or tok[0] != "ident" or "/" in tok[1] or "." in tok[1] or not colon or colon[0] != "colon":
            raise FilterError(
                f"Syntax error: '{prop}/{op}(' must be followed by 'variable:' in '{self.text}'."
            )
        var = tok[1]
        self.i += 2
        return Lambda(prop, op, var, self.parse_parenthesised("')' expected after the lambda expression"))

    def parse_literal(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise FilterError(f"Syntax error: value expected in '{self.text}'.")
        self.i += 1
        kind, raw = tok
        if kind == "string":
            return raw[1:-1].replace("''", "'")
        if kind == "datetime":
            return DateTimeLiteral(format_timestamp(parse_timestamp(raw)))
        if kind == "guid":
            return raw
        if kind == "number":
            return float(raw) if "." in raw else int(raw)
        if kind == "ident" and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        if kind == "ident" and raw.lower() == "null":
            return None
        nxt = self.peek()
        if kind == "ident" and "." in raw and nxt and nxt[0] == "string":
            # an enum literal qualified with its type: microsoft.graph.signInAccessType'serviceProvider'
            self.i += 1
            return nxt[1][1:-1].replace("''", "'")
        raise FilterError(f"Syntax error: '{raw}' is not a valid value in '{self.text}'.")


def parse_filter(text: str) -> Node:
    """Parse a ``$filter`` expression; raises :class:`FilterError`."""
    return _Parser(text).parse()


def conjuncts(node: Node) -> list[Node]:
    """The operands of a (nested) ``and`` chain, in order; any other node is its own single operand."""
    if isinstance(node, And):
        out: list[Node] = []
        for item in node.items:
            out.extend(conjuncts(item))
        return out
    return [node]


def conjunction(node: Node) -> list[Compare]:
    """The comparisons of a pure ``and`` chain; anything with ``or``/``not`` raises FilterError."""
    if isinstance(node, Compare):
        return [node]
    if isinstance(node, And):
        out: list[Compare] = []
        for item in node.items:
            out.extend(conjunction(item))
        return out
    raise FilterError("Invalid filter clause: only 'and' combinations of comparisons are supported.")


@lru_cache(maxsize=4096)
def flag_set(value: str) -> frozenset[str]:
    """A flags-enum value as the set of its member names, lower case: ``"b2bCollaboration,serviceProvider"``
    -> ``{"b2bcollaboration", "serviceprovider"}``. ``none`` is the zero value, i.e. the empty set."""
    return frozenset(p for p in (part.strip().lower() for part in value.split(",")) if p and p != "none")


def _has(actual: Any, expected: Any) -> bool:
    """OData ``has``: every flag of the right operand is set in the left one (``x has none`` is always true)."""
    if not isinstance(actual, str) or not isinstance(expected, str):
        return False
    return flag_set(expected) <= flag_set(actual)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
    "has": _has,
}


def evaluate(node: Node, getter: Callable[[str], Any]) -> bool:
    """Evaluate against an entity; ``getter`` receives the lower-cased property path.

    Strings compare case-insensitively (Graph does for the enum and id properties we serve).
    """
    if isinstance(node, And):
        return all(evaluate(item, getter) for item in node.items)
    if isinstance(node, Or):
        return any(evaluate(item, getter) for item in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, getter)
    if isinstance(node, Lambda):
        return _evaluate_lambda(node, getter)
    actual = getter(node.key)
    expected = node.value.value if isinstance(node.value, DateTimeLiteral) else node.value
    if isinstance(actual, str) and isinstance(expected, str):
        actual, expected = actual.lower(), expected.lower()
    return _COMPARE[node.op](actual, expected)


def _evaluate_lambda(node: Lambda, getter: Callable[[str], Any]) -> bool:
    """``any``: some element satisfies the body (``any()``: the collection is not empty); ``all``: every one
    does. Inside the body the range variable names the element; other paths resolve as outside."""
    collection = getter(node.key)
    if not isinstance(collection, list | tuple | set | frozenset):
        return False
    if node.body is None:
        return bool(collection)
    var = node.var.lower()
    body = node.body

    def scoped(element: Any) -> Callable[[str], Any]:
        return lambda key: element if key == var else getter(key)

    results = (evaluate(body, scoped(element)) for element in collection)
    return any(results) if node.op == "any" else all(results)
