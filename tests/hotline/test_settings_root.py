"""Settings are loaded by the composition root only: the packages below it are handed them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("language", "tickets", "knowledge", "asr", "ivr", "agent_console")


def test_no_package_below_the_composition_root_loads_the_settings() -> None:
    loading = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                name = (
                    node.id
                    if isinstance(node, ast.Name)
                    else node.attr
                    if isinstance(node, ast.Attribute)
                    else ""
                )
                if name == "load_settings":
                    loading.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert loading == []
