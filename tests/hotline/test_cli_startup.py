"""`hotline` starts fast and prints only a command's result: heavy packages load inside the commands that use
them, and the schema check every command makes says nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = (
    "faster_whisper",
    "ctranslate2",
    "sklearn",
    "jieba",
    "scipy",
    "vosk",
    "openpyxl",
    "pypinyin",
    "numpy",
)


def hotline(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotline.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=60,
    )


def test_help_imports_none_of_the_heavy_packages() -> None:
    script = (
        "import contextlib, io, json, sys\nfrom hotline.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


def test_an_ordinary_command_prints_its_result_without_alembic_lines(tmp_path: Path) -> None:
    env = {"HOTLINE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"}
    first, again = hotline("leaders", "list", env=env), hotline("leaders", "list", env=env)
    assert first.returncode == again.returncode == 0, first.stderr
    assert "alembic" not in first.stderr + again.stderr
    assert again.stderr == ""
