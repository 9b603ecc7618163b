"""Local PBX without Asterisk: template rendering, refused empty secrets, private config files, prompts data,
apt mirror parsing."""

from __future__ import annotations

import configparser
import os
import re
import stat
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from config import Settings
from ivr import events as ev
from ivr.pbx import LocalPbx, PbxError, PbxInfo
from ivr.pbx.mirror import debian_mirror, parse_deb822, parse_one_line, pick_debian_archive
from ivr.pbx.prompts import PROMPTS_FILE
from ivr.pbx.render import (
    AMI_USERNAME,
    CREDENTIALS_USERNAME,
    DTLS_CERT_FILE,
    TEMPLATE_DIR,
    RenderValues,
    render_all,
    template_names,
)
from ivr.pbx.webrtc import make_dtls_certificate


@pytest.fixture
def values(settings: Settings) -> RenderValues:
    return RenderValues.generate(settings, audiosocket_port=19999)


def test_every_placeholder_is_filled(values: RenderValues) -> None:
    rendered = render_all(values.as_context())
    assert (
        set(rendered)
        == set(template_names())
        >= {
            "asterisk.conf",
            "modules.conf",
            "manager.conf",
            "queues.conf",
            "pjsip.conf",
            "extensions.conf",
            "rtp.conf",
        }
    )
    for name, text in rendered.items():
        assert "{{" not in text and "{%" not in text, name
    assert f"secret = {values.ami_secret}" in rendered["manager.conf"]
    assert f"bind = 127.0.0.1:{values.sip_port}" in rendered["pjsip.conf"]
    assert "BOT_SERVICE=127.0.0.1:19999" in rendered["extensions.conf"]
    for ext, password in values.agents.items():
        assert f"[{ext}](agent-endpoint)" in rendered["pjsip.conf"]
        assert f"password = {password}" in rendered["pjsip.conf"]


def test_the_dialplan_asks_the_blocklist_on_the_configured_port(settings: Settings) -> None:
    moved = settings.model_copy(
        update={"blocklist": settings.blocklist.model_copy(update={"agi_port": 16073})}
    )
    dialplan = render_all(RenderValues.generate(moved).as_context())["extensions.conf"]
    assert "BLOCKLIST_AGI=agi://127.0.0.1:16073/blocklist" in dialplan
    inbound = dialplan.split("[hotline-inbound]")[1]
    assert (
        inbound.index("AGI(${BLOCKLIST_AGI}") < inbound.index("Answer()") < inbound.index("Read(")
    )
    assert "[hotline-blocked]" in dialplan and "Playback(hotline/blocked)" in dialplan


def test_each_start_gets_fresh_secrets(settings: Settings) -> None:
    first, second = RenderValues.generate(settings), RenderValues.generate(settings)
    assert first.ami_secret != second.ami_secret
    assert first.credentials_secret != second.credentials_secret != second.ami_secret
    assert set(first.agents) == {str(6001 + i) for i in range(10)}
    assert first.agents["6001"] != second.agents["6001"]


@pytest.mark.parametrize("secret", ["", "   "])
@pytest.mark.parametrize("account", ["ami", "credentials"])
def test_empty_ami_secret_is_refused(values: RenderValues, account: str, secret: str) -> None:
    with pytest.raises(PbxError) as err:
        render_all(values.as_context() | {f"{account}_secret": secret})
    assert err.value.code == "pbx.empty_secret"


def test_the_two_ami_accounts_must_differ(values: RenderValues) -> None:
    """One section of manager.conf for both would give the controller's account the AstDB one's `system`."""
    with pytest.raises(PbxError) as err:
        render_all(replace(values, credentials_username=values.ami_username).as_context())
    assert err.value.code == "pbx.ami_account_clash"


def test_empty_sip_password_is_refused(values: RenderValues) -> None:
    with pytest.raises(PbxError) as err:
        render_all(replace(values, agents={"6001": ""}).as_context())
    assert err.value.code == "pbx.empty_secret"


def test_empty_carrier_password_is_refused(values: RenderValues) -> None:
    with pytest.raises(PbxError) as err:
        render_all(replace(values, carrier_password=" ").as_context())
    assert err.value.code == "pbx.empty_secret"


def test_the_carrier_simulator_keeps_the_callers_number_and_may_only_call_12345(
    values: RenderValues, settings: Settings
) -> None:
    rendered = render_all(values.as_context())
    sections = _sections(rendered["pjsip.conf"])
    endpoint, auth = (sections[(values.carrier_username, kind)] for kind in ("endpoint", "auth"))
    assert "callerid" not in endpoint  # the caller's number is the From user, as from a carrier
    assert (endpoint["identify_by"], endpoint["auth"], endpoint["context"]) == (
        "auth_username",
        values.carrier_username,
        "carrier-inbound",
    )
    assert (auth["username"], auth["password"]) == (
        values.carrier_username,
        values.carrier_password,
    )
    assert "auth_username" in sections[("global", "global")]["endpoint_identifier_order"]
    inbound = rendered["extensions.conf"].split("[carrier-inbound]\n", 1)[1].split("\n\n", 1)[0]
    assert inbound == "exten => 12345,1,Goto(hotline-inbound,12345,1)"
    assert (
        values.carrier_password != RenderValues.generate(settings).carrier_password
    )  # fresh at every start


def _sections(conf: str) -> dict[tuple[str, str], dict[str, str]]:
    """(name, type) → options of a rendered pjsip.conf (templates not resolved: the sections written out)."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for block in re.split(r"^\[", conf, flags=re.M)[1:]:
        head, _, body = block.partition("\n")
        lines = (line for line in body.splitlines() if not line.lstrip().startswith(";"))
        pairs = (line.split("=", 1) for line in lines if "=" in line)
        options = {key.strip(): value.strip() for key, value in pairs}
        if "type" in options:
            out[(head.split("]")[0], options["type"])] = options
    return out


def test_missing_value_is_refused(values: RenderValues) -> None:
    context = values.as_context()
    del context["sip_port"]
    with pytest.raises(PbxError) as err:
        render_all(context)
    assert err.value.code == "pbx.template_value_missing"


@pytest.fixture
def created_modes(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[int, int]]:
    """With umask 0: inode → permission bits at creation of every file made through ``os.open``."""
    modes: dict[int, int] = {}
    real_open = os.open

    def spy(
        path: str | Path, flags: int, mode: int = 0o777, *args: object, **kwargs: object
    ) -> int:
        fd = real_open(path, flags, mode, *args, **kwargs)  # type: ignore[arg-type]
        if flags & os.O_CREAT:
            info = os.fstat(fd)
            modes.setdefault(info.st_ino, stat.S_IMODE(info.st_mode))
        return fd

    monkeypatch.setattr(os, "open", spy)
    old_umask = os.umask(0)
    try:
        yield modes
    finally:
        os.umask(old_umask)


def fake_root(cache: Path) -> Path:
    """The parts of a PBX root that writing the configuration needs; asterisk is the current user."""
    etc = cache / "root" / "etc"
    (etc / "asterisk").mkdir(parents=True)
    (etc / "passwd").write_text(
        f"asterisk:x:{os.getuid()}:{os.getgid()}::/var/lib/asterisk:/bin/false\n"
    )
    return etc / "asterisk"


def test_config_with_secrets_is_never_readable_by_others(
    settings: Settings, values: RenderValues, tmp_path: Path, created_modes: dict[int, int]
) -> None:
    etc = fake_root(tmp_path)
    LocalPbx(settings, tmp_path)._write_config(values)
    for name in ("manager.conf", "pjsip.conf"):
        info = (etc / name).stat()
        assert stat.S_IMODE(info.st_mode) == 0o640, name
        assert created_modes.get(info.st_ino) == 0o600, (
            name
        )  # created private, not chmod-ed afterwards
    assert values.ami_secret in (etc / "manager.conf").read_text()


def test_pbx_json_is_private_even_over_a_stale_temporary_file(
    settings: Settings, values: RenderValues, tmp_path: Path, created_modes: dict[int, int]
) -> None:
    stale = tmp_path / "pbx.tmp"
    stale.write_text("{}")
    stale.chmod(0o644)
    pbx = LocalPbx(settings, tmp_path)
    pbx._write_info(
        PbxInfo(
            1,
            "127.0.0.1",
            5038,
            "hotline",
            values.ami_secret,
            5060,
            9092,
            tmp_path,
            tmp_path,
            tmp_path,
        )
    )
    info = pbx.info_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and created_modes.get(info.st_ino) == 0o600
    assert values.ami_secret in pbx.info_file.read_text()


RIGHTS = ("read", "write")


def manager_accounts(values: RenderValues) -> dict[str, dict[str, set[str]]]:
    """The AMI accounts of the rendered manager.conf: name → read/write → its classes."""
    parser = configparser.ConfigParser(comment_prefixes=(";",), interpolation=None)
    parser.read_string(render_all(values.as_context())["manager.conf"])
    return {
        name: {right: set(filter(None, parser[name][right].split(","))) for right in RIGHTS}
        for name in parser.sections()
        if name != "general"
    }


def test_a_restart_keeps_both_ami_logins_and_an_older_pbx_gets_the_astdb_one(
    settings: Settings, tmp_path: Path
) -> None:
    """pbx.json holds both logins, so a restart (same secrets) lets connected clients log in again; a PBX started
    before the AstDB account existed gets a fresh one."""
    pbx = LocalPbx(settings, tmp_path)
    info = PbxInfo(
        1, "127.0.0.1", 15038, "hotline", "s1", 15060, 19092, tmp_path, tmp_path, tmp_path
    )
    info.credentials_username, info.credentials_secret = "hotline-credentials", "s2"
    kept = pbx._values_of(PbxInfo.from_json(info.to_json()))
    assert (kept.ami_secret, kept.credentials_username, kept.credentials_secret) == (
        "s1",
        "hotline-credentials",
        "s2",
    )
    older = pbx._values_of(replace(info, credentials_username="", credentials_secret=""))
    assert older.credentials_username == CREDENTIALS_USERNAME
    assert older.credentials_secret not in ("", "s2")
    assert older.credentials_secret in render_all(older.as_context())["manager.conf"]


def test_shipped_manager_conf_has_no_default_secret_and_least_privilege() -> None:
    text = (TEMPLATE_DIR / "manager.conf").read_text()
    secrets = re.findall(r"^\s*secret\s*=\s*(.*)$", text, re.M)
    assert secrets == ["{{ ami_secret }}", "{{ credentials_secret }}"]
    for right, classes in re.findall(r"^(read|write)\s*=\s*(.*)$", text, re.M):
        assert not {"all", "command", "config"} & set(classes.split(",")), right


def test_the_controller_may_not_load_modules_the_astdb_account_may_do_nothing_else(
    values: RenderValues,
) -> None:
    """`system` (DBPut/DBDelTree, but also ModuleLoad) never together with `originate`: an account that could
    load app_system and Originate System() would be a shell on the PBX."""
    accounts = manager_accounts(values)
    assert set(accounts) == {values.ami_username, values.credentials_username}
    controller, astdb = accounts[values.ami_username], accounts[values.credentials_username]
    assert controller["write"] == {"call", "agent", "originate", "reporting"}
    assert astdb == {"read": set(), "write": {"system"}}


# The class (AMI Privilege) of events as Asterisk 22 sends them (the recorded fixtures show most of them).
EVENT_CLASSES = {
    **dict.fromkeys(
        ("Newchannel", "Newstate", "Hangup", "BridgeEnter", "MixMonitorStart", "AttendedTransfer"),
        "call",
    ),
    **dict.fromkeys(
        (
            "QueueCallerJoin",
            "QueueCallerLeave",
            "QueueCallerAbandon",
            "AgentCalled",
            "AgentRingNoAnswer",
            "AgentConnect",
            "AgentComplete",
            "QueueMemberStatus",
            "QueueMemberAdded",
            "QueueMemberRemoved",
            "QueueMemberPause",
            "QueueMemberPenalty",
        ),
        "agent",
    ),
    "UserEvent": "user",
    "FullyBooted": "system",
    "Shutdown": "system",
    "VarSet": "dialplan",
    "Newexten": "dialplan",
}


def test_the_shipped_account_may_read_every_event_the_controller_subscribes_to(
    values: RenderValues,
) -> None:
    """An event of a class not granted never arrives: subscribing to it would be dead code."""
    granted = manager_accounts(values)[AMI_USERNAME]["read"]
    needed = {name: EVENT_CLASSES[name] for name in ev.SUBSCRIBED}
    assert {name: cls for name, cls in needed.items() if cls not in granted} == {}


def test_every_prompt_the_dialplan_plays_is_synthesised() -> None:
    prompts = tomllib.loads(PROMPTS_FILE.read_text())["prompts"]
    used = set()
    for name in ("extensions.conf", "queues.conf"):
        used |= set(re.findall(r"hotline/([a-z][a-z-]+)", (TEMPLATE_DIR / name).read_text()))
    assert used and used <= set(prompts), used - set(prompts)
    digits = tomllib.loads(PROMPTS_FILE.read_text())["digits"]
    assert {str(n) for n in range(10)} | {"10", "hundred", "wan"} <= set(digits)


DEB822 = """\
Types: deb
# http://snapshot.example.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

THIRD_PARTY = """\
Types: deb
URIs: https://nodejs.example.net/node_20.x
Suites: nodistro
Components: main
"""


def test_deb822_picks_the_main_archive_not_security_or_third_party() -> None:
    sources = parse_deb822(THIRD_PARTY) + parse_deb822(DEB822)
    assert len(sources) == 3
    assert sources[1].suites == ("bookworm", "bookworm-updates")
    assert pick_debian_archive(sources) == "http://mirror.example.org/debian"


def test_deb822_disabled_stanza_is_ignored() -> None:
    text = DEB822.replace("Types: deb\n# http", "Types: deb\nEnabled: no\n# http", 1)
    assert pick_debian_archive(parse_deb822(text)) is None


def test_one_line_sources() -> None:
    text = """\
# deb http://old.example.org/debian buster main
deb http://security.example.org/debian-security bookworm-security main
deb-src http://src.example.org/debian bookworm main
deb https://cloud.example.com/apt cloud-sdk main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] https://mirror.example.cn/debian/ bookworm main contrib
"""
    sources = parse_one_line(text)
    assert [s.uris[0] for s in sources] == [
        "http://security.example.org/debian-security",
        "http://src.example.org/debian",
        "https://cloud.example.com/apt",
        "https://mirror.example.cn/debian/",
    ]
    assert pick_debian_archive(sources) == "https://mirror.example.cn/debian"


def test_mirror_from_files_or_setting(tmp_path: Path) -> None:
    sources_dir = tmp_path / "sources.list.d"
    sources_dir.mkdir()
    (sources_dir / "debian.sources").write_text(DEB822)
    (sources_dir / "node.sources.disabled").write_text(THIRD_PARTY.replace("nodistro", "bookworm"))
    missing_list = tmp_path / "sources.list"
    assert debian_mirror("", missing_list, sources_dir) == "http://mirror.example.org/debian"
    assert (
        debian_mirror("http://local.example/debian/", missing_list, sources_dir)
        == "http://local.example/debian"
    )
    (sources_dir / "debian.sources").unlink()
    with pytest.raises(PbxError) as err:
        debian_mirror("", missing_list, sources_dir)
    assert err.value.code == "pbx.mirror_not_found"


def test_browser_softphones_get_webrtc_endpoints_over_a_loopback_websocket(
    values: RenderValues,
) -> None:
    rendered = render_all(values.as_context())
    pjsip = rendered["pjsip.conf"]
    assert "protocol = ws" in pjsip and "webrtc = yes" in pjsip
    assert f"dtls_cert_file = {DTLS_CERT_FILE}" in pjsip
    assert values.webrtc_extensions == [str(6101 + i) for i in range(10)]
    for ext in values.webrtc_extensions:
        assert f"[{ext}](webrtc-endpoint)" in pjsip and f"auth = {ext}" in pjsip
    assert f"bindaddr = 127.0.0.1\nbindport = {values.ws_port}" in rendered["http.conf"]
    assert "load => res_pjsip_transport_websocket.so" in rendered["modules.conf"]
    # the test phone calls 12345 as a citizen with its own number, and nothing else
    test_phone = pjsip.split("[test-phone](webrtc-endpoint)")[1]
    assert "context = test-phone" in test_phone and f"<{values.test_phone_number}>" in test_phone
    dialplan = rendered["extensions.conf"].split("[test-phone]\n")[1].split("\n\n")[0]
    assert dialplan == "exten => 12345,1,Goto(hotline-inbound,12345,1)"


def test_softphone_extensions_must_not_clash(values: RenderValues) -> None:
    with pytest.raises(PbxError) as clash:
        render_all(replace(values, webrtc_extensions=["6001"]).as_context())
    assert clash.value.code == "pbx.extension_clash"


def test_softphone_passwords_are_in_no_file_but_in_astdb(values: RenderValues) -> None:
    """The WebRTC extensions' and the test phone's auth objects come from AstDB (short-lived passwords the
    console issues), so no rendered file or pbx.json holds a password of theirs."""
    rendered = render_all(values.as_context())
    webrtc = rendered["pjsip.conf"].split("[webrtc-endpoint](!)")[1].split("; ---- carrier")[0]
    assert not re.search(r"^password\s*=", webrtc, re.M) and "(agent-auth)" not in webrtc
    sorcery = rendered["sorcery.conf"]
    assert "auth = config,pjsip.conf,criteria=type=auth\nauth = astdb,hotline-sip" in sorcery
    assert "load => res_sorcery_astdb.so" in rendered["modules.conf"]
    assert [name for name in PbxInfo.__dataclass_fields__ if "password" in name] == [
        "carrier_password"
    ]


def test_the_dtls_certificate_is_fresh_and_its_key_private(tmp_path: Path) -> None:
    cert, key = tmp_path / "keys" / "webrtc.crt", tmp_path / "keys" / "webrtc.key"
    owner = (os.getuid(), os.getgid())
    make_dtls_certificate(cert, key, owner)
    first = cert.read_text()
    assert first.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" in key.read_text()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    make_dtls_certificate(cert, key, owner)  # every start makes a new one
    assert cert.read_text() != first
