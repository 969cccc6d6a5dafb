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
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.txt", "requirements-dev.txt", "requirements-tools.txt")
OURS = {"shared", "functions", "function_app", "tools", "tests"}
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([^\]]*)\])?==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(lock: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, extras) of every requirement in a lock; each must carry at least one hash."""
    text = (ROOT / lock).read_text(encoding="utf-8")
    out: dict[str, tuple[str, set[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = REQUIREMENT.match(block)
        if match is None:
            continue
        assert "--hash=sha256:" in block, f"{lock}: {match.group(1)} has no hash"
        extras = {canonical(e.strip()) for e in (match.group(2) or "").split(",") if e.strip()}
        out[canonical(match.group(1))] = (match.group(3), extras)
    return out


def locked(lock: str) -> dict[str, str]:
    """name -> version of every requirement in a lock."""
    return {name: version for name, (version, _) in requirements(lock).items()}


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


@pytest.mark.parametrize("lock", ("requirements.txt", "requirements-dev.txt"))
def test_every_extra_a_locked_package_asks_for_is_in_the_lock(lock: str) -> None:
    """msgraph's kiota-http asks for ``httpx[http2]``. A lock line without the extra (uv strips extras
    unless ``--no-strip-extras``) made pip 23 in hash-checking mode refuse the whole install the day a
    newer httpx was published ("all requirements must have their versions pinned with =="): the extra
    was resolved on its own, against the index. Each extra asked for must be on the lock's own line."""
    pinned = requirements(lock)
    missing: dict[str, set[str]] = {}
    for name in pinned:
        try:
            asked = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in asked:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            target = canonical(requirement.name)
            extras = {canonical(e) for e in requirement.extras}
            if target in pinned and not extras <= pinned[target][1]:
                missing.setdefault(target, set()).update(extras - pinned[target][1])
    assert not missing, f"{lock}: extras asked for but not on the lock line (make lock): {missing}"


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
