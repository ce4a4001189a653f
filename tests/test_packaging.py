"""Every code folder is listed as a package, so a non-editable install ships it too."""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject():
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = set()
    for prefix, folder in setup["package-dir"].items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            if "tests" in rel.parts:
                continue
            found.add(".".join((prefix, *rel.parts)) if rel.parts else prefix)
    assert found == listed


def test_cli_help_lists_the_subcommands():
    from metrotrace.tools.cli import build_parser

    text = build_parser().format_help()
    for command in ("demo", "wire"):
        assert command in text
