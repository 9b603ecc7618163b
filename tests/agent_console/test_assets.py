"""`hotline console install-assets`: fast when done, a clear message without npm, files served locally."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_console.assets import (
    STAMP_NAME,
    VENDOR_FILES,
    VENDOR_TREES,
    AssetsError,
    _fingerprint,
    install_assets,
    is_installed,
)
from tests.agent_console.harness import Console
from tests.conftest import missing


def frontend(tmp_path: Path) -> tuple[Path, Path]:
    front, vendor = tmp_path / "frontend", tmp_path / "vendor"
    front.mkdir()
    (front / "package.json").write_text(
        '{"name": "x", "private": true, "dependencies": {"echarts": "6.1.0"}}'
    )
    return front, vendor


def test_second_run_does_nothing(tmp_path: Path) -> None:
    front, vendor = frontend(tmp_path)
    vendor.mkdir()
    for name in VENDOR_FILES.values():
        (vendor / name).write_text("// built")
    for name in VENDOR_TREES.values():
        (vendor / name).mkdir()
    (vendor / STAMP_NAME).write_text(_fingerprint(front))
    assert install_assets(front, vendor, npm="/nonexistent/npm", say=lambda _: None) is False
    (front / "package.json").write_text(
        '{"name": "x", "private": true, "dependencies": {"echarts": "6.0.0"}}'
    )
    assert not is_installed(front, vendor)  # a changed pin means a new install


def test_missing_npm_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    front, vendor = frontend(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AssetsError, match="apt-get install -y nodejs npm"):
        install_assets(front, vendor, say=lambda _: None)


async def test_installed_echarts_is_served_by_the_console(console: Console) -> None:
    if not is_installed():
        missing("front-end assets not installed (run `hotline console install-assets`)")
    resp = await console.browser().request("GET", "/static/vendor/echarts.min.js")
    assert resp.status == 200 and resp.content_type == "application/javascript"
    assert (
        len(await resp.text()) > 500_000
    )  # the body is kept; read() refuses after the connection is released


async def test_installed_sip_js_is_served_as_es_modules(console: Console) -> None:
    if not is_installed():
        missing("front-end assets not installed (run `hotline console install-assets`)")
    browser = console.browser()
    index = await browser.request("GET", "/static/vendor/sip.js/index.js")
    assert index.status == 200 and index.content_type == "application/javascript"
    assert 'from "./api/index.js"' in await index.text()  # its imports resolve beside it
    web = await browser.request("GET", "/static/vendor/sip.js/platform/web/index.js")
    assert web.status == 200
    typings = await browser.request("GET", "/static/vendor/sip.js/index.d.ts")
    assert typings.status == 404  # only the JavaScript is copied
