"""The Debian sid root holding Asterisk, built once with debootstrap into the cache folder and then reused.

The build runs in a temporary folder that is renamed only when debootstrap succeeded, so an interrupted
build is never reused; a lock file keeps two processes from building at once. debootstrap runs in a
private mount namespace (``unshare --mount``): the /proc and /sys it mounts vanish with it, even when it
is killed, so a half-built folder can always be deleted.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ivr.pbx.errors import PbxError
from ivr.pbx.filelock import locked

log = logging.getLogger(__name__)

# asterisk pulls in its modules' libraries and the English core sounds; Chinese prompts are synthesised.
PACKAGES = ("asterisk", "asterisk-modules")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
ROOT_NAME = "root"
PARTIAL_PREFIX = "root.partial-"


def root_path(cache_dir: Path) -> Path:
    return cache_dir / ROOT_NAME


def ensure_root(cache_dir: Path, suite: str, mirror: str) -> Path:
    """The complete root in *cache_dir*, building it first when missing (about a minute)."""
    root = root_path(cache_dir)
    if root.is_dir():
        return root
    with locked(cache_dir / "build.lock"):
        if root.is_dir():  # another process built it while we waited
            return root
        for stale in cache_dir.glob(PARTIAL_PREFIX + "*"):
            log.info("removing interrupted build %s", stale)
            shutil.rmtree(stale, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=cache_dir))
        try:
            _debootstrap(partial, suite, mirror)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.chmod(0o755)
        partial.rename(root)
    return root


def _debootstrap(target: Path, suite: str, mirror: str) -> None:
    for tool in ("debootstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            raise PbxError(
                "pbx.tool_missing", f"缺少系统工具 {tool}，请安装 Debian 软件包 debootstrap", tool
            )
    cmd = [
        "unshare",
        "--mount",
        "--",
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
    ]
    # Verified download: the Debian archive keyring of this machine also signs sid's Release file.
    if KEYRING.is_file():
        cmd.append(f"--keyring={KEYRING}")
    cmd += [suite, str(target), mirror]
    log.info("building the Asterisk root: %s", " ".join(cmd))
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise PbxError("pbx.build_failed", "构建 Asterisk 运行环境失败 (debootstrap)", tail)
    log.info("Asterisk root built in %.0f s", time.monotonic() - started)
