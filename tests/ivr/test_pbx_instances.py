"""Named local PBX instances without Asterisk: a second Asterisk in the same root gets its own folders, files,
shifted ports and a system name; the default instance stays as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import Settings
from ivr.pbx import LocalPbx, PbxError
from ivr.pbx.render import Instance, RenderValues, render_all


def rendered(settings: Settings, name: str) -> tuple[RenderValues, dict[str, str]]:
    instance = Instance.of(settings, name)
    values = RenderValues.generate(instance.shifted(settings), instance=instance)
    return values, render_all(values.as_context())


def directories(asterisk_conf: str) -> dict[str, str]:
    return dict(re.findall(r"^(ast\w+) => (\S+)$", asterisk_conf, re.MULTILINE))


def test_the_default_instance_keeps_debian_folders_ports_and_uniqueids(settings: Settings) -> None:
    values, files = rendered(settings, "")
    dirs = directories(files["asterisk.conf"])
    assert (dirs["astetcdir"], dirs["astrundir"], dirs["astspooldir"]) == (
        "/etc/asterisk",
        "/var/run/asterisk",
        "/var/spool/asterisk",
    )
    assert (dirs["astdbdir"], dirs["astlogdir"]) == ("/var/lib/asterisk", "/var/log/asterisk")
    assert "systemname" not in files["asterisk.conf"]
    assert (values.ami_port, values.sip_port, values.rtp_start) == (
        settings.pbx.ami_port,
        settings.pbx.sip_port,
        settings.pbx.rtp_start,
    )
    assert values.dtls_cert_file == "/var/lib/asterisk/keys/webrtc.crt"


def test_a_named_instance_has_its_own_folders_ports_and_system_name(settings: Settings) -> None:
    shift = settings.pbx.instance_port_offset  # b is the first named instance
    values, files = rendered(settings, "b")
    conf = files["asterisk.conf"]
    # [directories] must not be a template "(!)": Asterisk ignores a template section, and -C would then
    # still use the compiled-in folders (the second instance finds the first one's control socket)
    assert "[directories]\n" in conf and "(!)" not in conf
    dirs = directories(conf)
    assert {
        k: dirs[k] for k in ("astetcdir", "astrundir", "astspooldir", "astlogdir", "astdbdir")
    } == {
        "astetcdir": "/etc/asterisk-b",
        "astrundir": "/var/run/asterisk-b",
        "astspooldir": "/var/spool/asterisk-b",
        "astlogdir": "/var/log/asterisk-b",
        "astdbdir": "/var/lib/asterisk-b",
    }
    assert dirs["astdatadir"] == "/usr/share/asterisk"  # sounds and prompts shared
    assert re.search(r"^systemname = hotline-b$", conf, re.MULTILINE)
    assert f"port = {settings.pbx.ami_port + shift}" in files["manager.conf"]
    assert f"bind = 127.0.0.1:{settings.pbx.sip_port + shift}" in files["pjsip.conf"]
    assert f"rtpstart = {settings.pbx.rtp_start + shift}" in files["rtp.conf"]
    assert f"rtpend = {settings.pbx.rtp_end + shift}" in files["rtp.conf"]
    assert f"bindport = {settings.softphone.ws_port + shift}" in files["http.conf"]
    agi = f"BLOCKLIST_AGI=agi://127.0.0.1:{settings.blocklist.agi_port + shift}/blocklist"
    assert agi in files["extensions.conf"]
    assert values.dtls_cert_file == "/var/lib/asterisk-b/keys/webrtc.crt"


def test_a_named_instance_keeps_its_own_files_in_the_shared_cache(
    settings: Settings, tmp_path: Path
) -> None:
    default, b = LocalPbx(settings, tmp_path), LocalPbx(settings, tmp_path, instance="b")
    assert default.root == b.root  # one root, built once
    assert (default.info_file.name, b.info_file.name) == ("pbx.json", "pbx-b.json")
    assert (default.log_file.name, b.log_file.name) == ("asterisk.log", "asterisk-b.log")
    assert b.settings.pbx.ami_port == settings.pbx.ami_port + settings.pbx.instance_port_offset
    assert default.settings is settings
    assert b.status() is None


def test_an_unknown_instance_and_ports_beyond_65535_are_refused(settings: Settings) -> None:
    with pytest.raises(PbxError) as unknown:
        Instance.of(settings, "zz")
    assert unknown.value.code == "pbx.unknown_instance"
    far = settings.model_copy(
        update={
            "pbx": settings.pbx.model_copy(
                update={"rtp_start": 40000, "rtp_end": 40199, "instance_port_offset": 30000}
            )
        }
    )
    with pytest.raises(PbxError) as beyond:
        Instance.of(far, "b")
    assert beyond.value.code == "pbx.bad_ports"


def test_pbx_commands_take_the_instance(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hotline pbx status|stop|start|restart|call --instance NAME`: an unknown name is refused with its code."""
    from hotline.cli import build_parser

    for command in ("start", "stop", "status", "restart", "call"):
        args = build_parser().parse_args(["pbx", command, "--instance", "zz"])
        assert args.instance == "zz"
        assert args.handler(settings, args) == 2
        assert '"error": "pbx.unknown_instance"' in capsys.readouterr().err
    cached = settings.model_copy(
        update={"pbx": settings.pbx.model_copy(update={"cache_dir": str(tmp_path)})}
    )
    status = build_parser().parse_args(["pbx", "status", "--instance", "b"])
    assert status.handler(cached, status) == 1  # b is known, not running
    assert capsys.readouterr().out.strip() == '{"running": false}'
