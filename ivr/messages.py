"""Voice messages (留言), the controller's side: every recorded message becomes a ticket, its number read back.

The dialplan (``[hotline-message]``) records the caller into ``<Uniqueid>-<caller digits>.wav`` in the messages
folder and reports it live (UserEvent HotlineMessage → :class:`ivr.events.MessageLeft`) and durably (AstDB
``hotline-message/<Uniqueid>`` = RECORD_STATUS). :class:`MessageFiler` files it through
:func:`tickets.voice_messages.file_message` (idempotent per Uniqueid: a replayed event, a resync or a sweep
never makes a second ticket; a withheld or invalid number gives a ticket without one), links the ticket to the
call (:meth:`ivr.controller.HotlineController.link_ticket`: no missed-call call-back for it), and sets
``MESSAGE_TICKET`` (the ticket number's digits) on the caller's channel for the dialplan to read back.

A message whose event was lost (AMI or the database away) is still a file: :meth:`MessageFiler.sweep`, run every
``message.sweep_s`` and after every AMI (re)connect, files each file without a record — one the dialplan has
reported in AstDB, or, when AMI cannot say, one older than the longest recording could be.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.pii import mask_phone
from config.settings import Settings
from ivr import events as ev
from ivr.ami import AmiError
from ivr.controller import HotlineController
from tickets.errors import InvalidInput
from tickets.voice_messages import LeftMessage, file_message, filed_calls

log = logging.getLogger(__name__)

MESSAGE_FAMILY = "hotline-message"  # AstDB family the dialplan reports messages in
TICKET_VARIABLE = (
    "MESSAGE_TICKET"  # channel variable the dialplan reads the ticket number back from
)
SWEPT = "SWEPT"  # record status of a message filed from the folder whose status AMI could not give
RECORDING_MARGIN_S = 60.0  # beyond the longest message: a file this old is no longer being recorded
CHUNK = 500  # files checked against the database per query


@dataclass(frozen=True)
class MessageFile:
    """A message file in the folder: ``<Uniqueid>-<caller digits>.wav`` (no digits: the number was withheld)."""

    call_id: str
    caller_number: str
    name: str
    mtime: float


def parse_file(path: Path) -> MessageFile | None:
    """The call and caller of a message file; None for any other file."""
    if path.suffix != ".wav":
        return None
    call_id, sep, number = path.stem.rpartition("-")
    if not sep or not call_id or not (number.isdigit() or not number):
        return None
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return MessageFile(call_id, number, path.name, mtime)


def messages_folder(settings: Settings) -> Path:
    """``message.folder``, or the local PBX's messages folder."""
    if settings.message.folder:
        return Path(settings.message.folder)
    from ivr.pbx.harness import MESSAGES, LocalPbx

    return LocalPbx(settings).root / MESSAGES


class MessageFiler:
    """Files voice messages as tickets; :meth:`on_event` and :meth:`reconcile` are subscribed to the controller,
    :meth:`run` sweeps the folder until cancelled."""

    def __init__(
        self,
        controller: HotlineController,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        folder: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.controller = controller
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.cfg = settings.message
        self.folder = folder
        self.clock = clock
        self.filed = 0  # tickets filed by this process
        self._lock = (
            asyncio.Lock()
        )  # one filing at a time: the event, its AstDB copy and a sweep never race
        self._sweeping = asyncio.Lock()  # one sweep at a time: the next finds the files filed
        self._refused: set[str] = (
            set()
        )  # calls whose message the ticket services refuse (logged, file kept)

    # -- subscribed to the controller --------------------------------------------------------------------------
    def on_event(self, event: ev.DomainEvent) -> Awaitable[None] | None:
        return self._on_message(event) if isinstance(event, ev.MessageLeft) else None

    async def reconcile(self, _live: frozenset[str]) -> None:
        """After every AMI (re)connect: file what was reported while nobody listened."""
        try:
            await self.sweep()
        except Exception:  # the database may be away too: the periodic sweep tries again
            log.exception("voice-message sweep after a reconnect failed")

    async def run(self) -> None:
        """Sweep every ``message.sweep_s`` until cancelled."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("voice-message sweep failed")
            await asyncio.sleep(self.cfg.sweep_s)

    # -- filing ------------------------------------------------------------------------------------------------
    async def _on_message(self, event: ev.MessageLeft) -> None:
        message = LeftMessage(
            event.chan.uniqueid,
            event.file,
            event.caller_number or event.chan.caller_number,
            event.record_status,
        )
        ticket_no = await self.file(message)
        if ticket_no is not None:
            await self._read_back(event.chan.channel, ticket_no)

    async def file(self, message: LeftMessage) -> str | None:
        """The ticket number of ``message`` (filed now or before); None when it could not be filed (logged)."""
        if message.call_id in self._refused:
            return None
        async with self._lock:
            try:
                async with self.sessionmaker() as session:
                    filed = await file_message(
                        session, message, settings=self.settings, now=self.clock(), sms=self.cfg.sms
                    )
            except InvalidInput as exc:
                self._refused.add(message.call_id)
                log.error(
                    "voice message %s (caller %s) cannot become a ticket: %s",
                    message.call_id,
                    mask_phone(message.caller_phone),
                    exc.code,
                )
                return None
            except Exception:
                log.exception(
                    "voice message %s not filed now; the sweep files it later", message.call_id
                )
                return None
        if filed.new:
            self.filed += 1
            log.info("voice message %s filed as ticket %s", message.call_id, filed.ticket_no)
            await self._link(message.call_id, filed.ticket_no)
        return filed.ticket_no

    async def _link(self, call_id: str, ticket_no: str) -> None:
        """The call log shows the ticket, which closes the call's missed-call task (logged when it fails)."""
        try:
            await self.controller.link_ticket(call_id, ticket_no)
        except Exception:
            log.warning(
                "call %s: ticket %s not linked in the call log", call_id, ticket_no, exc_info=True
            )

    async def _read_back(self, channel: str, ticket_no: str) -> None:
        try:
            await self.controller.ami.action(
                {
                    "Action": "Setvar",
                    "Channel": channel,
                    "Variable": TICKET_VARIABLE,
                    "Value": ticket_no.replace("-", ""),
                }
            )
        except AmiError as exc:  # the caller hung up: the number goes by SMS or call-back
            log.info("ticket %s not read back on %s: %s", ticket_no, channel, exc.code)

    # -- the folder --------------------------------------------------------------------------------------------
    async def sweep(self) -> list[str]:
        """File every message file without a record; returns the ticket numbers of those filed now."""
        async with self._sweeping:
            return await self._sweep()

    async def _sweep(self) -> list[str]:
        files = await asyncio.to_thread(self._listing)
        filed: list[str] = []
        for chunk in (files[i : i + CHUNK] for i in range(0, len(files), CHUNK)):
            async with self.sessionmaker() as session:
                known = await filed_calls(session, [f.call_id for f in chunk])
            for orphan in (
                f for f in chunk if f.call_id not in known and f.call_id not in self._refused
            ):
                ticket_no = await self._file_orphan(orphan)
                if ticket_no is not None:
                    filed.append(ticket_no)
        return filed

    def _listing(self) -> list[MessageFile]:
        if not self.folder.is_dir():
            return []
        files = (parse_file(p) for p in self.folder.iterdir())
        return sorted((f for f in files if f is not None), key=lambda f: f.mtime)

    async def _file_orphan(self, orphan: MessageFile) -> str | None:
        status = await self._reported(orphan.call_id)
        if status is None:
            age_s = self.clock().timestamp() - orphan.mtime
            if age_s < self.cfg.max_s + self.cfg.readback_wait_s + RECORDING_MARGIN_S:
                return None  # maybe still being recorded: its event, or a later sweep, files it
            status = SWEPT
        log.info("voice message %s found without a ticket (%s): filing it", orphan.call_id, status)
        ticket_no = await self.file(
            LeftMessage(orphan.call_id, orphan.name, orphan.caller_number, status)
        )
        call = self.controller.state.calls.get(orphan.call_id)
        if ticket_no is not None and call is not None and call.ended_at is None:
            await self._read_back(call.channel, ticket_no)
        return ticket_no

    async def _reported(self, call_id: str) -> str | None:
        """RECORD_STATUS the dialplan stored for the call; None when none, or AMI cannot say now."""
        if not self.controller.ami.connected.is_set():
            return None
        try:
            return await self.controller.astdb_get(MESSAGE_FAMILY, call_id)
        except AmiError:
            return None
