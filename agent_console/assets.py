"""Browser libraries from npm, copied into ``static/vendor/`` so the console serves everything itself (no CDN)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
FRONTEND_DIR = PACKAGE_DIR / "frontend"
VENDOR_DIR = PACKAGE_DIR / "static" / "vendor"
STAMP_NAME = ".installed"

# node_modules path → file name under static/vendor/ (templates use static('vendor/<name>')).
VENDOR_FILES: dict[str, str] = {
    "echarts/dist/echarts.min.js": "echarts.min.js",
    "echarts/LICENSE": "echarts.LICENSE.txt",
    "sip.js/LICENSE.md": "sip.js.LICENSE.txt",
}
# node_modules folder → folder under static/vendor/, its JavaScript files only (ES modules that import each other:
# the softphone loads static('vendor/sip.js/index.js')).
VENDOR_TREES: dict[str, str] = {"sip.js/lib": "sip.js"}

NPM_MISSING = (
    "npm 未安装，无法下载前端资源。Debian/Ubuntu：sudo apt-get install -y nodejs npm；"
    "或从 Node.js 官方发行版安装 Node 18 以上（自带 npm）。"
)


class AssetsError(RuntimeError):
    """npm is missing or failed; the message says what to do."""


def _fingerprint(frontend: Path) -> str:
    digest = hashlib.sha256(json.dumps([VENDOR_FILES, VENDOR_TREES], sort_keys=True).encode())
    for name in ("package.json", "package-lock.json"):
        path = frontend / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _copy_scripts(source: Path, target: Path) -> None:
    """Replace ``target`` with the ``*.js`` files of the folder ``source``, keeping their relative paths."""
    if not source.is_dir():
        raise AssetsError(
            f"npm 安装后缺少目录 {source}；请检查 {source.parents[1] / 'package.json'}"
        )
    shutil.rmtree(target, ignore_errors=True)
    for path in source.rglob("*.js"):
        copy = target / path.relative_to(source)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)


def is_installed(frontend: Path = FRONTEND_DIR, vendor: Path = VENDOR_DIR) -> bool:
    stamp = vendor / STAMP_NAME
    return (
        stamp.exists()
        and stamp.read_text().strip() == _fingerprint(frontend)
        and all(
            (vendor / name).exists() for name in [*VENDOR_FILES.values(), *VENDOR_TREES.values()]
        )
    )


def install_assets(
    frontend: Path = FRONTEND_DIR,
    vendor: Path = VENDOR_DIR,
    *,
    npm: str | None = None,
    say: Callable[[str], None] = print,
) -> bool:
    """Run ``npm ci`` (``npm install`` without a lock file) and copy the files; False when already up to date."""
    if is_installed(frontend, vendor):
        say(f"前端资源已是最新：{vendor}")
        return False
    npm = npm or shutil.which("npm")
    if npm is None:
        raise AssetsError(NPM_MISSING)
    verb = "ci" if (frontend / "package-lock.json").exists() else "install"
    cmd = [
        npm,
        verb,
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        "--omit-lockfile-registry-resolved",
        "--loglevel=error",
    ]
    say(f"运行 {' '.join(cmd)}（{frontend}）")
    result = subprocess.run(cmd, cwd=frontend, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssetsError(
            f"npm {verb} 失败（退出码 {result.returncode}）：{result.stderr.strip()[-2000:]}"
        )
    vendor.mkdir(parents=True, exist_ok=True)
    for source, name in VENDOR_FILES.items():
        path = frontend / "node_modules" / source
        if not path.exists():
            raise AssetsError(f"npm 安装后缺少文件 {path}；请检查 {frontend / 'package.json'}")
        shutil.copyfile(path, vendor / name)
    for source, name in VENDOR_TREES.items():
        _copy_scripts(frontend / "node_modules" / source, vendor / name)
    (vendor / STAMP_NAME).write_text(_fingerprint(frontend) + "\n")
    say(f"前端资源已安装到 {vendor}")
    return True
