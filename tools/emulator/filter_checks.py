"""The 400s a ``$filter`` earns, worded as Graph words them: an expression that does not parse, a property
the type does not have, a lambda where none is supported. :mod:`tools.emulator.filters` parses; this
module turns its verdicts into :class:`~tools.emulator.errors.EmulatorError`."""

from __future__ import annotations

from collections.abc import Iterator

from .errors import bad_request
from .filters import And, Compare, FilterError, Node, Not, Or, parse_filter


def filter_or_400(text: str) -> Node:
    try:
        return parse_filter(text)
    except FilterError as exc:
        msg = str(exc)
        raise bad_request(
            msg if msg.startswith("Invalid filter clause") else f"Invalid filter clause: {msg}"
        ) from exc


def parse_filter_or_400(text: str | None) -> Node | None:
    return filter_or_400(text) if text else None


def check_props(node: Node, allowed: set[str], type_name: str) -> None:
    for c in comparisons(node):
        if c.key not in allowed:
            raise bad_request(
                f"Invalid filter clause: Could not find a property named '{c.prop}' on type '{type_name}'."
            )


def comparisons(node: Node, lambda_refused: str | None = None) -> Iterator[Compare]:
    """The comparisons of a filter; a lambda (``any``/``all``) is refused with ``lambda_refused``."""
    if isinstance(node, Compare):
        yield node
    elif isinstance(node, And | Or):
        for item in node.items:
            yield from comparisons(item, lambda_refused)
    elif isinstance(node, Not):
        yield from comparisons(node.item, lambda_refused)
    else:
        raise bad_request(
            lambda_refused or f"Invalid filter clause: the lambda on '{node.prop}' is not supported here."
        )
