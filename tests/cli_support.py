"""Running the `hotline` command line as a user would: a separate process on a given database."""

from __future__ import annotations

import asyncio
import os
import sys


async def run_cli(url: str, *args: str) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of ``hotline ARGS`` on the database at ``url``."""
    env = {**os.environ, "HOTLINE_DATABASE_URL": url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hotline.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()
