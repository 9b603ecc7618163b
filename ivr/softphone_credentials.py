"""Short-lived SIP passwords of the browser softphones (浏览器软电话), kept in Asterisk's own database (AstDB).

PJSIP finds the ``auth`` objects of the WebRTC extensions and of the test phone through sorcery's AstDB wizard
(config/asterisk/sorcery.conf: ``auth = astdb,hotline-sip``): one JSON object per extension under the family
``hotline-sip/auth``, the format res_sorcery_astdb reads (``{"auth_type": ..., "username": ..., "password": ...}``).
No password of theirs is in any configuration file. The console asks for a fresh password at every fetch of an
agent's softphone settings; this module writes it with AMI ``DBPut``, deletes it with ``DBDelTree`` when it expires
or is revoked, and after every AMI login (a restarted PBX or controller) clears the family and writes back only the
passwords still live here: none outlives its TTL nor the process that issued it.

Both actions need the ``system`` write class, which also holds ModuleLoad: so they go through a connection of
their own, logged in with an AMI account that has nothing else (config/asterisk/manager.conf ``write = system``,
``[ami] credentials_username``), never through the controller's account, which may Originate.
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial

from config.settings import Settings
from ivr.ami import AmiActionError, AmiClient, AmiError
from ivr.controller import resolve_ami_credentials

log = logging.getLogger(__name__)

SORCERY_PREFIX = "hotline-sip"  # sorcery.conf: auth = astdb,<prefix>
AUTH_FAMILY = f"{SORCERY_PREFIX}/auth"  # res_sorcery_astdb keeps objects under <prefix>/<type>


def auth_object(extension: str, password: str) -> str:
    """The PJSIP ``auth`` object of ``extension`` as res_sorcery_astdb stores it (a flat JSON object)."""
    return json.dumps(
        {"auth_type": "userpass", "username": extension, "password": password},
        separators=(",", ":"),
    )


class SoftphoneCredentials:
    """The live softphone passwords of one Asterisk: issue, revoke, expire, restore after an AMI login.

    Writes are serialised, so an expiry or revocation never deletes a password issued after it was decided."""

    def __init__(self, ami: AmiClient) -> None:
        """``ami``: this object's own connection (the AstDB account); every login of it runs :meth:`reconcile`."""
        self.ami = ami
        ami.on_connected = lambda _ami: self.reconcile()
        self._live: dict[str, str] = {}  # extension → its password now
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._expiries: set[asyncio.Task[None]] = set()
        self._writes = asyncio.Lock()

    def start(self) -> None:
        """Connect, and reconnect with backoff until :meth:`stop` (:class:`ivr.ami.AmiClient`)."""
        self.ami.start()

    async def stop(self) -> None:
        """Disconnect and forget the live passwords (the next login's reconcile removes them from AstDB)."""
        for extension in list(self._live):
            self._forget(extension)
        await self.ami.stop()

    def live(self) -> frozenset[str]:
        """The extensions that have a password now."""
        return frozenset(self._live)

    async def issue(self, extension: str, password: str, ttl_s: float) -> None:
        """Give ``extension`` the password ``password`` (the previous one stops working) for ``ttl_s`` seconds."""
        async with self._writes:
            self._forget(extension)
            await self._put(extension, password)
            self._live[extension] = password
            loop = asyncio.get_running_loop()
            self._timers[extension] = loop.call_later(ttl_s, self._expire_soon, extension, password)

    async def revoke(self, extension: str) -> None:
        """``extension`` has no valid password any more (a logout, a new login)."""
        async with self._writes:
            self._forget(extension)
            await self._delete(extension)

    async def reconcile(self) -> None:
        """After an AMI login: clear every stored password, put back the live ones."""
        async with self._writes:
            await self._delete_tree({})
            for extension, password in self._live.items():
                await self._put(extension, password)

    def _forget(self, extension: str) -> None:
        self._live.pop(extension, None)
        timer = self._timers.pop(extension, None)
        if timer is not None:
            timer.cancel()

    def _expire_soon(self, extension: str, password: str) -> None:
        task = asyncio.ensure_future(self._expire(extension, password))
        self._expiries.add(task)
        task.add_done_callback(self._expiries.discard)

    async def _expire(self, extension: str, password: str) -> None:
        async with self._writes:
            if self._live.get(extension) != password:  # revoked or issued anew meanwhile
                return
            self._forget(extension)
            try:
                await self._delete(extension)
            except AmiError as exc:  # the next AMI login's reconcile removes it
                log.warning("softphone password of %s expired but not deleted: %s", extension, exc)

    async def _put(self, extension: str, password: str) -> None:
        action = {"Family": AUTH_FAMILY, "Key": extension, "Val": auth_object(extension, password)}
        await self.ami.action({"Action": "DBPut", **action})

    async def _delete(self, extension: str) -> None:
        # DBDelTree of the one key: unlike DBDel's, its answer tells "not found" from a database failure
        await self._delete_tree({"Key": extension})

    async def _delete_tree(self, key: dict[str, str]) -> None:
        try:
            await self.ami.action({"Action": "DBDelTree", "Family": AUTH_FAMILY, **key})
        except AmiActionError as exc:
            if "not found" not in exc.detail.lower():
                raise


def softphone_credentials(settings: Settings) -> SoftphoneCredentials:
    """The softphone passwords of the Asterisk of ``settings.ami``, on a connection (not yet started) with the
    AstDB account, its login looked up anew at every connect the same way as the controller's
    (:func:`ivr.controller.resolve_ami_credentials`)."""
    ami = AmiClient.from_settings(
        settings.ami, credentials=partial(resolve_ami_credentials, settings, "credentials")
    )
    return SoftphoneCredentials(ami)
