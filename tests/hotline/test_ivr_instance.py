"""`hotline ivr --instance b` (or ``callcontrol.pbx = "b"`` with an empty ``ami.username``) controls the named
local Asterisk b: its PBX is "b", AMI and the blocklist FastAGI are on b's ports and the login is b's own, read
from ``pbx-b.json`` like the default instance's from ``pbx.json``. Without Asterisk: the running instances are
faked by their info files."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import HotlineError, Settings
from hotline.cli import build_parser, main
from hotline.commands.ivr import instance_settings
from ivr.controller import resolve_ami_credentials
from ivr.pbx import PbxError, harness
from ivr.pbx.harness import PbxInfo


@pytest.fixture
def local(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose local PBX cache holds a running default instance and a running instance b."""
    monkeypatch.setattr(harness, "_alive_in", lambda _pid, _root: True)
    for suffix, port, login in (("", 15038, "hotline"), ("-b", 16038, "hotline-b")):
        info = PbxInfo(
            1, "127.0.0.1", port, login, f"secret{suffix}", 0, 0, tmp_path, tmp_path, tmp_path
        )
        (tmp_path / f"pbx{suffix}.json").write_text(info.to_json())
    return settings.model_copy(
        update={
            "pbx": settings.pbx.model_copy(update={"cache_dir": str(tmp_path)}),
            "ami": settings.ami.model_copy(update={"username": "", "secret": ""}),
        }
    )


def named(settings: Settings, pbx: str) -> Settings:
    return settings.model_copy(
        update={"callcontrol": settings.callcontrol.model_copy(update={"pbx": pbx})}
    )


def test_the_controller_of_instance_b_logs_in_to_b_with_b_s_login(local: Settings) -> None:
    shift = local.pbx.instance_port_offset
    for own in (instance_settings(local, "b"), instance_settings(named(local, "b"))):
        assert own.callcontrol.pbx == "b"
        assert (own.ami.port, own.blocklist.agi_port) == (
            local.pbx.ami_port + shift,
            local.blocklist.agi_port + shift,
        )
        assert resolve_ami_credentials(own) == ("hotline-b", "secret-b")
        assert own.pbx == local.pbx  # the harness shifts the instance's own ports itself


def test_the_default_instance_and_a_configured_login_stay_as_they_were(local: Settings) -> None:
    for default in (instance_settings(local), instance_settings(named(local, "a"))):
        assert (default.ami.port, default.blocklist.agi_port) == (
            local.ami.port,
            local.blocklist.agi_port,
        )
        assert resolve_ami_credentials(default) == ("hotline", "secret")
    configured = local.model_copy(
        update={"ami": local.ami.model_copy(update={"username": "ctl", "secret": "s"})}
    )
    own = instance_settings(configured, "b")  # HOTLINE_AMI_* given: they are used as they are
    assert (own.callcontrol.pbx, own.ami.port) == ("b", local.ami.port)
    assert resolve_ami_credentials(own) == ("ctl", "s")


def test_an_unknown_or_contradicting_instance_is_refused(local: Settings) -> None:
    with pytest.raises(PbxError) as unknown:
        instance_settings(local, "z")
    assert unknown.value.code == "pbx.unknown_instance"
    with pytest.raises(HotlineError) as mismatch:
        instance_settings(named(local, "a"), "b")
    assert mismatch.value.code == "ivr.instance_mismatch"


def test_hotline_ivr_takes_the_instance_and_refuses_an_unknown_one_with_its_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert build_parser().parse_args(["ivr", "--instance", "b"]).instance == "b"
    assert main(["ivr", "--instance", "z"]) == 2  # before any connection is tried
    assert "pbx.unknown_instance" in capsys.readouterr().err
