"""A deployment that cannot drift: each environment installs from a lock that pins every package with its
hashes (``make lock`` writes them from the ``.in`` files), and every package the code imports is in the
lock of the environment it runs in."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.txt", "requirements-dev.txt", "requirements-tools.txt")
OURS = {"shared", "functions", "function_app", "tools", "tests"}
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: str) -> dict[str, str]:
    """name -> version of every requirement in a lock; each must carry at least one hash."""
    text = (ROOT / lock).read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = REQUIREMENT.match(block)
        if match is None:
            continue
        assert "--hash=sha256:" in block, f"{lock}: {match.group(1)} has no hash"
        out[canonical(match.group(1))] = match.group(2)
    return out


def imported_distributions(paths: list[Path]) -> dict[str, set[str]]:
    """Distribution -> files importing it (top-level and local imports alike), the standard library and
    the project's own packages left out."""
    owners = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in OURS or top in sys.stdlib_module_names or top == "__future__":
                    continue
                for distribution in owners.get(top, [top]):
                    found.setdefault(canonical(distribution), set()).add(str(path.relative_to(ROOT)))
    return found


def sources(*folders: str) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        target = ROOT / folder
        files += [target] if target.is_file() else sorted(target.rglob("*.py"))
    return files


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_package_is_pinned_with_hashes(lock: str) -> None:
    assert len(locked(lock)) > 10


def test_the_function_app_imports_only_what_its_lock_holds() -> None:
    runtime = locked("requirements.txt")
    missing = {
        d: files
        for d, files in imported_distributions(sources("shared", "functions", "function_app.py")).items()
        if d not in runtime
    }
    assert not missing, (
        f"imported but not in requirements.txt (add it to requirements.in, then make lock): {missing}"
    )


# Run by .venv-tools, not .venv (checkov's environment): checked against that lock.
TOOLS_ENVIRONMENT = ("tools/infra_check.py",)


def test_tests_and_tools_import_only_what_the_dev_lock_holds() -> None:
    dev = locked("requirements-dev.txt")
    files = [p for p in sources("tests", "tools") if str(p.relative_to(ROOT)) not in TOOLS_ENVIRONMENT]
    missing = {d: where for d, where in imported_distributions(files).items() if d not in dev}
    assert not missing, f"imported but not in requirements-dev.txt: {missing}"


def test_the_infrastructure_checks_import_only_what_the_tools_lock_holds() -> None:
    tools = locked("requirements-tools.txt")
    imported = imported_distributions([ROOT / p for p in TOOLS_ENVIRONMENT])
    # Not installed in this (.venv) environment, a module is named by its import name: pycep is pycep-parser.
    missing = {d for d in imported if d not in tools and not any(n.startswith(f"{d}-") for n in tools)}
    assert not missing, f"imported but not in requirements-tools.txt: {missing}"


def test_the_dev_lock_has_the_runtime_at_the_same_versions() -> None:
    runtime, dev = locked("requirements.txt"), locked("requirements-dev.txt")
    assert {name: dev.get(name) for name in runtime} == runtime
