"""The local PBX's two AMI accounts on the real Asterisk (config/asterisk/manager.conf), for the default instance
and the named one "b" alike: the controller's may not touch AstDB nor the modules (the ``system`` class, whose
ModuleLoad with its Originate would be a shell), the softphones' AstDB account writes AstDB and may not Originate."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest

from ivr.ami import AmiActionError, AmiClient
from ivr.pbx import LocalPbx, PbxInfo

pytestmark = [pytest.mark.pbx, pytest.mark.slow, pytest.mark.serial]
FAMILY = "hotline-test-ami-accounts"


@pytest.fixture(params=["", "b"], ids=["default", "instance-b"])
def running_pbx(
    request: pytest.FixtureRequest, local_pbx: LocalPbx, pbx: PbxInfo
) -> Iterator[tuple[LocalPbx, PbxInfo]]:
    """The instance, restarted when its pbx.json is older than the AstDB account; a named one started by the
    test is stopped afterwards."""
    instance = LocalPbx(local_pbx.settings, local_pbx.cache_dir, instance=request.param)
    was_running = instance.status() is not None
    info = instance.start()
    if not info.credentials_username:
        info = instance.restart()
        if not request.param:
            vars(pbx).update(vars(info))  # the session's PbxInfo: other tests read its secrets
    yield instance, info
    if request.param and not was_running:
        instance.stop()


@pytest.fixture
async def logins(
    running_pbx: tuple[LocalPbx, PbxInfo],
) -> AsyncIterator[tuple[AmiClient, AmiClient]]:
    """AMI sessions of the controller's account and of the AstDB account."""
    _, info = running_pbx
    clients = [
        AmiClient(host=info.ami_host, port=info.ami_port, username=user, secret=secret)
        for user, secret in (
            (info.ami_username, info.ami_secret),
            (info.credentials_username, info.credentials_secret),
        )
    ]
    try:
        for client in clients:
            client.start()
            await asyncio.wait_for(client.connected.wait(), 20)
        yield clients[0], clients[1]
    finally:
        for client in clients:
            await client.stop()


async def refused(ami: AmiClient, action: Mapping[str, Any]) -> str:
    """Asterisk's reason for refusing ``action`` (it fails the test when Asterisk runs it)."""
    with pytest.raises(AmiActionError) as err:
        await ami.action(action)
    return err.value.detail


async def test_the_controller_may_not_write_astdb_and_the_astdb_account_may_not_originate(
    running_pbx: tuple[LocalPbx, PbxInfo], logins: tuple[AmiClient, AmiClient]
) -> None:
    instance, _ = running_pbx
    controller, astdb = logins
    key, value = secrets.token_hex(4), secrets.token_hex(8)
    put = {"Action": "DBPut", "Family": FAMILY, "Key": key, "Val": value}
    try:
        assert "Permission denied" in await refused(controller, put)
        assert "Permission denied" in await refused(
            controller, {"Action": "ModuleCheck", "Module": "app_system"}
        )
        await astdb.action(put)
        assert f"Value: {value}" in instance.rx(f"database get {FAMILY} {key}")
        assert "Permission denied" in await refused(
            astdb,
            {
                "Action": "Originate",
                "Channel": "Local/s@hotline-test-nowhere",
                "Application": "Wait",
                "Data": "1",
                "Async": "true",
            },
        )
    finally:
        instance.rx(f"database deltree {FAMILY}")
