"""README's layout table names every module of the package, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "resc_dramatiq"


def rows() -> dict[str, str]:
    """The table's rows: package folder -> what the row says."""
    text = (ROOT / "README.md").read_text()
    return dict(re.findall(r"^\| `(\w+)/` \| (.*) \|$", text, flags=re.MULTILINE))


def modules(folder: str) -> set[str]:
    return {p.stem for p in (PACKAGE / folder).glob("*.py") if p.stem != "__init__"}


@pytest.mark.parametrize(
    "folder", ["config", "rules", "store", "router", "worker", "ops", "dashboard"]
)
def test_the_layout_table_names_each_module_of_a_package_folder(folder: str) -> None:
    row = rows()[folder]
    named = set(re.findall(r"`([a-z_]+)`", row))
    assert modules(folder) - named == set(), f"modules of {folder}/ the README does not name"
    assert named - modules(folder) == set(), f"names in the {folder}/ row that are no module"


def test_the_layout_table_has_a_row_per_package_folder() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(rows())


def test_a_module_over_250_lines_says_why_in_its_docstring() -> None:
    unexplained = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > 250 and "lines on purpose" not in text.split('"""')[1]:
            unexplained.append(str(path.relative_to(ROOT)))
    assert unexplained == []
