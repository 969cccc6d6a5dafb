"""Parse every Bicep file of the infrastructure with pycep and print the result as JSON.

Runs in the tools virtual environment, which holds pycep-parser (pinned by checkov):

    .venv-tools/bin/python tools/infra_check.py [ROOT ...]      # default ROOT: infra

Prints one JSON document on stdout:

    {"files": {"infra/main.bicep": {"ok": true, "error": null, "extensions": [], "tree": {...}}, ...}}

``tree`` is pycep's JSON form of the file (parameters, variables, resources, modules, outputs);
tests/test_infra.py reads it from the application's virtual environment, which does not have pycep.
Exit status: 0 when every file parsed, 1 when any did not, 2 on bad arguments.

The pycep version checkov pins predates Bicep's ``extension`` declaration (``extension
microsoftGraphV1``, used by infra/modules/entra.bicep for the Microsoft Graph resources). A line
holding exactly such a declaration is blanked before parsing (line numbers stay the same) and
reported under ``extensions``; everything else in the file must parse as it is.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

EXTENSION_DECLARATION = re.compile(r"^extension\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?://.*)?$")


def strip_extension_declarations(text: str) -> tuple[str, list[str]]:
    """Blank the ``extension NAME`` lines of a Bicep file; return the text and the names."""
    names: list[str] = []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        match = EXTENSION_DECLARATION.match(line.strip())
        if match:
            names.append(match.group(1))
            lines[index] = ""
    return "\n".join(lines), names


def parse_file(path: Path) -> dict[str, Any]:
    from pycep import BicepParser  # only in the tools environment

    text, extensions = strip_extension_declarations(path.read_text(encoding="utf-8"))
    try:
        tree = BicepParser().parse(text=text)
    except Exception as exc:  # pycep raises lark errors of several kinds
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {
            "ok": False,
            "error": f"{type(exc).__name__}: {first_line}",
            "extensions": extensions,
            "tree": None,
        }
    return {"ok": True, "error": None, "extensions": extensions, "tree": tree}


def main(argv: list[str]) -> int:
    roots = [Path(arg) for arg in argv] or [Path("infra")]
    missing = [str(root) for root in roots if not root.exists()]
    if missing:
        print(f"infra_check: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    files: dict[str, Any] = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(root.rglob("*.bicep"))
        for path in paths:
            files[path.as_posix()] = parse_file(path)
    json.dump({"files": files}, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0 if all(result["ok"] for result in files.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
