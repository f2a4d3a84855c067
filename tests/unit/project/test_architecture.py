"""The data's path reads left to right: gateway -> schemas -> Kafka -> streams -> sinks. Every import between the
four top-level packages follows it: gateway, streams and sinks import only themselves and schemas; schemas imports
only itself. (caliper_pipeline/ is the composition root and the tooling: it may import anything.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ALLOWED = {
    "schemas": {"schemas"},
    "gateway": {"gateway", "schemas"},
    "streams": {"streams", "schemas"},
    "sinks": {"sinks", "schemas"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """The top-level packages a module imports (every import statement, also inside functions)."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_datas_direction(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported, line in imported_packages(path):
            if imported in ALLOWED and imported not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not wrong, "imports against the data's direction:\n" + "\n".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from sinks.tables import FACT_TABLE\n    import gateway.main\n")
    assert {name for name, _ in imported_packages(module)} == {"sinks", "gateway"}


SOURCE_SUFFIXES = {".py", ".sql", ".yaml", ".yml", ".sh", ".toml"}
ISSUE_REFERENCE = re.compile(r"\b[Ii]ssues? \d+")  # an upstream "faust issue #606" is a link


def test_comments_say_what_the_code_does_not_which_issue_asked_for_it() -> None:
    """The project's own issue numbers belong in the tracker and the history, not in code or its comments.

    Applied migrations are exempt: their text is checksummed by every database that ran them, so it never changes."""
    found = []
    for package in (*ALLOWED, "caliper_pipeline", "tests", "deploy"):
        for path in sorted((ROOT / package).rglob("*")):
            if path.suffix in SOURCE_SUFFIXES and path.is_file() and path.parent.name != "migrations":
                for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if ISSUE_REFERENCE.search(line) and path.name != Path(__file__).name:
                        found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "issue numbers in code:\n" + "\n".join(found)
