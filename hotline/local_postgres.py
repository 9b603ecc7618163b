"""A throw-away PostgreSQL server in a temporary folder on a private loopback port (tests, benchmarks)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def _bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4])
    )
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).resolve().parent
    raise PostgresUnavailable("PostgreSQL server binaries not found (Debian package 'postgresql')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalPostgres:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url(db)`` gives an asyncpg URL."""

    datadir: Path
    port: int
    bindir: Path

    @classmethod
    def start(cls) -> LocalPostgres:
        bindir = _bindir()
        datadir = Path(tempfile.mkdtemp(prefix="hotline-pg-"))
        server = cls(datadir=datadir, port=_free_port(), bindir=bindir)
        if os.geteuid() == 0:
            shutil.chown(datadir, "postgres", "postgres")
        server._run(
            "initdb",
            "-D",
            str(datadir / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        opts = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {datadir} -c fsync=off -c max_connections=300"
        server._run(
            "pg_ctl",
            "-D",
            str(datadir / "data"),
            "-o",
            opts,
            "-w",
            "-l",
            str(datadir / "log"),
            "start",
        )
        return server

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.datadir / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)
