"""The browser softphones' short-lived SIP passwords in AstDB: issued, replaced, revoked, expired, and after an
AMI login only the live ones put back (res_sorcery_astdb's JSON auth objects under hotline-sip/auth)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, cast

import pytest

from config import Settings
from ivr.ami import AmiActionError, AmiClient, AmiNotConnected
from ivr.controller import AmiCredentialsAccountMissing, resolve_ami_credentials
from ivr.pbx import LocalPbx, PbxInfo
from ivr.softphone_credentials import AUTH_FAMILY, SoftphoneCredentials, softphone_credentials


class FakeAmi:
    """Keeps AstDB like Asterisk does for DBPut and DBDelTree; ``deleted`` is set at every deletion."""

    def __init__(self) -> None:
        self.astdb: dict[tuple[str, str], str] = {}
        self.actions: list[str] = []
        self.deleted = asyncio.Event()
        self.connected = True
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True

    async def action(self, action: dict[str, Any], **_: Any) -> dict[str, str]:
        if not self.connected:
            raise AmiNotConnected(action["Action"])
        name = action["Action"]
        self.actions.append(name)
        if name == "DBPut":
            self.astdb[action["Family"], action["Key"]] = action["Val"]
        elif name == "DBDelTree":
            keys = [
                k
                for k in self.astdb
                if k[0] == action["Family"] and action.get("Key", k[1]) == k[1]
            ]
            for key in keys:
                del self.astdb[key]
            self._gone(bool(keys), name)
        return {"Response": "Success"}

    def _gone(self, found: bool, name: str) -> None:
        self.deleted.set()
        if not found:
            raise AmiActionError(f"{name}: Database entry not found")

    def password(self, extension: str) -> str | None:
        stored = self.astdb.get((AUTH_FAMILY, extension))
        return json.loads(stored)["password"] if stored else None


@pytest.fixture
def ami() -> FakeAmi:
    return FakeAmi()


@pytest.fixture
def credentials(ami: FakeAmi) -> SoftphoneCredentials:
    return SoftphoneCredentials(cast(AmiClient, ami))


async def test_an_issued_password_is_the_auth_object_sorcery_reads(
    ami: FakeAmi, credentials: SoftphoneCredentials
) -> None:
    await credentials.issue("6101", "pw-1", 60)
    stored = json.loads(ami.astdb[AUTH_FAMILY, "6101"])
    assert stored == {"auth_type": "userpass", "username": "6101", "password": "pw-1"}
    await credentials.issue("6101", "pw-2", 60)  # a new fetch replaces it
    assert ami.password("6101") == "pw-2" and credentials.live() == {"6101"}


async def test_a_revoked_password_is_deleted_at_once_and_twice_is_harmless(
    ami: FakeAmi, credentials: SoftphoneCredentials
) -> None:
    await credentials.issue("6101", "pw", 60)
    await credentials.revoke("6101")
    assert ami.password("6101") is None and credentials.live() == frozenset()
    await credentials.revoke("6101")  # Asterisk: "Database entry not found"


async def test_a_password_is_deleted_when_its_ttl_is_over(
    ami: FakeAmi, credentials: SoftphoneCredentials
) -> None:
    await credentials.issue("6101", "pw", 0.05)
    await credentials.issue("6102", "other", 60)
    await asyncio.wait_for(ami.deleted.wait(), 5)
    assert ami.password("6101") is None and ami.password("6102") == "other"
    assert credentials.live() == {"6102"}


async def test_a_password_issued_again_outlives_the_earlier_ones_ttl(
    ami: FakeAmi, credentials: SoftphoneCredentials
) -> None:
    await credentials.issue("6101", "old", 0.05)
    await credentials.issue("6101", "new", 60)
    await credentials.issue("6102", "short", 0.1)  # its expiry comes after the old one's would have
    await asyncio.wait_for(ami.deleted.wait(), 5)
    assert ami.password("6101") == "new" and ami.password("6102") is None


async def test_an_expiry_while_asterisk_is_away_is_cleared_by_the_next_login(
    ami: FakeAmi, credentials: SoftphoneCredentials
) -> None:
    await credentials.issue("6101", "expired", 60)
    await credentials.issue("6102", "live", 60)
    ami.astdb[AUTH_FAMILY, "6109"] = '{"password": "of an earlier controller"}'
    ami.connected = False
    await credentials._expire("6101", "expired")  # its timer fired: logged, not raised
    assert credentials.live() == {"6102"}
    ami.connected = True
    login = credentials.ami.on_connected
    assert login is not None
    await login(credentials.ami)  # every login of its own AMI connection
    assert {key for _, key in ami.astdb} == {"6102"} and ami.password("6102") == "live"
    assert ami.actions[-2:] == ["DBDelTree", "DBPut"]  # the whole family, then the live one


async def test_an_empty_family_is_no_error_after_a_login(
    ami: FakeAmi, credentials: SoftphoneCredentials
) -> None:
    await credentials.reconcile()  # an empty family: "Database entry not found"
    assert ami.astdb == {}


async def test_stopping_forgets_the_passwords_and_closes_its_connection(
    ami: FakeAmi, credentials: SoftphoneCredentials
) -> None:
    await credentials.issue("6101", "pw", 0.05)
    await credentials.stop()
    assert ami.stopped and credentials.live() == frozenset()
    assert not credentials._timers  # no expiry fires after the stop


def with_ami(settings: Settings, **ami: str) -> Settings:
    return settings.model_copy(update={"ami": settings.ami.model_copy(update=ami)})


def test_a_production_asterisk_needs_its_own_astdb_account(settings: Settings) -> None:
    """Configured accounts (HOTLINE_AMI_*): the controller's never stands in for the AstDB one."""
    both = with_ami(
        settings,
        username="ctl",
        secret="s1",
        credentials_username="astdb",
        credentials_secret="s2",
    )
    assert resolve_ami_credentials(both) == ("ctl", "s1")
    assert resolve_ami_credentials(both, "credentials") == ("astdb", "s2")
    login = softphone_credentials(both).ami.credentials  # asked at every connect
    assert login is not None and login() == ("astdb", "s2")
    for wrong in (
        with_ami(settings, username="ctl", secret="s1"),
        with_ami(settings, username="ctl", secret="s1", credentials_username="ctl"),
    ):
        with pytest.raises(AmiCredentialsAccountMissing) as missing:
            resolve_ami_credentials(wrong, "credentials")
        assert missing.value.code == "ami.no_credentials_account"


@pytest.mark.parametrize("instance", ["", "b"])
def test_the_local_pbx_gives_each_account_its_own_generated_login(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, instance: str
) -> None:
    """Both logins come from the pbx.json of the controller's instance (callcontrol.pbx), default or named."""
    info = PbxInfo(
        1, "127.0.0.1", 15038, "hotline", "s1", 15060, 19092, tmp_path, tmp_path, tmp_path
    )
    monkeypatch.setattr(
        LocalPbx, "status", lambda pbx: info if pbx.instance.name == instance else None
    )
    own = settings.model_copy(
        update={"callcontrol": settings.callcontrol.model_copy(update={"pbx": instance})}
    )
    with pytest.raises(AmiCredentialsAccountMissing):  # a pbx.json older than the account
        resolve_ami_credentials(own, "credentials")
    info.credentials_username, info.credentials_secret = "hotline-credentials", "s2"
    assert resolve_ami_credentials(own) == ("hotline", "s1")
    assert resolve_ami_credentials(own, "credentials") == ("hotline-credentials", "s2")
