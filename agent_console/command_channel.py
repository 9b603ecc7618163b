"""The command channel from console workers to the AMI controllers, over PostgreSQL (a city centre).

A separate ``hotline console`` has no controller of its own; its :class:`CommandClient` inserts a command into
``console_commands`` (the call's name, its JSON arguments, the target PBX) and sends ``NOTIFY hotline_commands``
in the same transaction, then waits on its own ``LISTEN hotline_command_done`` connection. A
:class:`CommandExecutor` in each ``hotline ivr`` LISTENs on ``hotline_commands``, claims a command with one
``UPDATE … WHERE state = 'new' … FOR UPDATE SKIP LOCKED`` (so of two controllers exactly one runs it), calls the
same method of its call control, stores the result or the coded error and NOTIFYs its id.

Several Asterisks: each command names the PBX whose controller runs it (:meth:`CommandClient.call_on`; the
console's switchboard picks it per call), and each executor announces its PBX in ``console_controllers`` every
``callcontrol.heartbeat_s`` (:meth:`CommandClient.live_pbxes`: the PBXs announced within three heartbeats), so a
console can ask every PBX (the board, the softphones' passwords).

The console waits ``callcontrol.command_timeout_s``: a command nobody claimed by then is marked ``expired`` (it
never runs later) and answers 503 :class:`NoController`; one claimed but not finished answers 504
:class:`CommandTimeout`. A coded error of the call control comes back with its code, message and HTTP status.
Both sides reconnect with backoff; after a reconnect the executor claims what came meanwhile and the client
reads the outcome of every command it still waits for.

Arguments and results travel as JSON by the interface's type hints (:class:`Codec`): a new method of the
console's ``Switchboard`` protocol goes through the channel without code of its own, as long as its types are
dataclasses, literals, plain values or ORM rows. Times are the database server's, whatever the machines' clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, get_args, get_type_hints

import asyncpg
from pydantic import BaseModel, TypeAdapter, create_model
from sqlalchemy import delete, func, insert, inspect, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent_console.errors import (
    ConsoleError,
    DomainError,
    GatewayTimeout,
    InternalError,
    Unavailable,
    domain_status,
    error_codes,
)
from agent_console.hub_pg import LOST, PING_EVERY_S, Connect, backoff_delays
from agent_console.models import ConsoleCommand, ConsoleController
from config.errors import HotlineError

log = logging.getLogger(__name__)

COMMANDS = "hotline_commands"  # NOTIFY payload: the target PBX of a new command
DONE = "hotline_command_done"  # NOTIFY payload: the id of a finished command
NEW, CLAIMED, DONE_STATE, FAILED, EXPIRED = "new", "claimed", "done", "failed", "expired"
MISSED_HEARTBEATS = 3  # a controller silent for this many heartbeats is gone
Json = Any


class NoController(Unavailable):
    code = "command.no_controller"
    default_message = "没有可用的电话控制器（hotline ivr）接收该操作，请稍后重试"


class CommandTimeout(GatewayTimeout):
    code = "command.timeout"
    default_message = "电话控制器未在规定时间内完成该操作，请稍后查看结果"


class CommandFailed(InternalError):
    code = "command.failed"
    default_message = "电话控制器执行该操作时出错"


# -- JSON of an interface's calls ----------------------------------------------------------------------------


class _RowAdapter:
    """An ORM row as the JSON of its columns (a transient copy comes back)."""

    def __init__(self, cls: type[Any]) -> None:
        hints = get_type_hints(cls)
        columns: dict[str, Any] = {
            attr.key: (get_args(hints[attr.key])[0], ...) for attr in inspect(cls).column_attrs
        }
        self.cls = cls
        self.model: type[BaseModel] = create_model(f"{cls.__name__}Json", **columns)

    def dump_python(self, row: Any, mode: str = "json") -> Json:
        return self.model.model_validate(row, from_attributes=True).model_dump(mode=mode)

    def validate_python(self, data: Json) -> Any:
        return self.cls(**dict(self.model.model_validate(data)))


def _adapter(hint: Any) -> TypeAdapter[Any] | _RowAdapter:
    if isinstance(hint, type) and hasattr(hint, "__mapper__"):
        return _RowAdapter(hint)
    return TypeAdapter(hint)


class Codec:
    """The JSON of calls to ``interface``'s public methods, by their type hints."""

    def __init__(self, interface: type[Any]) -> None:
        self.interface = interface
        self._hints: dict[str, dict[str, TypeAdapter[Any] | _RowAdapter]] = {}

    def hints(self, kind: str) -> dict[str, TypeAdapter[Any] | _RowAdapter]:
        """The adapters of method ``kind``'s parameters and of its result (``return``)."""
        if kind not in self._hints:
            method = getattr(self.interface, kind, None) if not kind.startswith("_") else None
            if not callable(method):
                raise ValueError(f"{self.interface.__name__} has no method {kind!r}")
            self._hints[kind] = {name: _adapter(h) for name, h in get_type_hints(method).items()}
        return self._hints[kind]

    def encode_arguments(self, kind: str, arguments: dict[str, Any]) -> dict[str, Json]:
        hints = self.hints(kind)
        return {name: hints[name].dump_python(v, mode="json") for name, v in arguments.items()}

    def decode_arguments(self, kind: str, data: dict[str, Json]) -> dict[str, Any]:
        hints = self.hints(kind)
        return {name: hints[name].validate_python(v) for name, v in data.items()}

    def encode_result(self, kind: str, value: Any) -> Json:
        return self.hints(kind)["return"].dump_python(value, mode="json")

    def decode_result(self, kind: str, data: Json) -> Any:
        return self.hints(kind)["return"].validate_python(data)


# -- the LISTEN connection of either side --------------------------------------------------------------------


async def listen_forever(
    connect: Connect,
    channel: str,
    on_notice: Callable[[str], None],
    on_listening: Callable[[], Awaitable[None]],
    listening: asyncio.Event,
) -> None:
    """LISTEN on ``channel`` (``on_notice`` with each payload); after each (re)connect ``on_listening`` catches
    up. A lost connection is reopened with backoff; ``listening`` is set while LISTEN is on."""
    delays = backoff_delays()
    while True:
        try:
            conn = await connect()
        except LOST as exc:
            log.warning("command channel: cannot connect to PostgreSQL (%s)", exc)
            await asyncio.sleep(next(delays))
            continue
        try:
            await _follow(conn, channel, on_notice, on_listening, listening)
            delays = backoff_delays()  # it worked for a while: start again from a short wait
        except (SQLAlchemyError, *LOST) as exc:
            log.warning("command channel: LISTEN %s lost (%s); reconnecting", channel, exc)
        finally:
            listening.clear()
            conn.terminate()
        await asyncio.sleep(next(delays))


async def _follow(
    conn: asyncpg.Connection,
    channel: str,
    on_notice: Callable[[str], None],
    on_listening: Callable[[], Awaitable[None]],
    listening: asyncio.Event,
) -> None:
    """LISTEN on ``conn`` until the connection is lost (checked every ``PING_EVERY_S``)."""
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _conn: lost.set())
    await conn.add_listener(channel, lambda *notice: on_notice(str(notice[-1])))
    await on_listening()
    listening.set()
    while not lost.is_set():
        try:
            async with asyncio.timeout(PING_EVERY_S):
                await lost.wait()
        except TimeoutError:
            async with asyncio.timeout(PING_EVERY_S):
                await conn.fetchval("SELECT 1")
    raise ConnectionResetError("the server closed the connection")


class _Listening:
    """One background LISTEN task: started and stopped by the composition root."""

    def __init__(self) -> None:
        self.listening = asyncio.Event()  # set while LISTEN is on and the catch-up is done
        self._tasks: list[asyncio.Task[None]] = []

    def _start(self, *work: Awaitable[None]) -> None:
        self._tasks = [asyncio.ensure_future(w) for w in work]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


# -- the console side ----------------------------------------------------------------------------------------


def _remote_error(code: str, message: str) -> ConsoleError:
    """A stored coded error as the console reports it: the channel's own, or a domain error at its status."""
    own = {cls.code: cls for cls in (NoController, CommandTimeout, CommandFailed)}
    if code in own:
        return own[code](message)
    statuses = {c: status for status, codes in error_codes().items() for c in codes}
    return DomainError(statuses.get(code, domain_status(HotlineError)), code, message)


class CommandClient(_Listening):
    """Sends a command to the controller of a PBX (default ``target``; ``""``: any), waits for its outcome."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        connect: Connect,
        codec: Codec,
        *,
        target: str = "",
        timeout_s: float = 10.0,
        heartbeat_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.sessionmaker = sessionmaker
        self.connect = connect
        self.codec = codec
        self.target = target
        self.timeout_s = timeout_s
        self.alive = timedelta(seconds=MISSED_HEARTBEATS * heartbeat_s)
        self._waiting: dict[int, asyncio.Future[None]] = {}

    async def start(self) -> None:
        self._start(
            listen_forever(self.connect, DONE, self._on_done, self._catch_up, self.listening)
        )

    async def call(self, kind: str, **arguments: Any) -> Any:
        """Run ``kind(**arguments)`` on the controller of ``target``; its result, or its coded error raised here."""
        return await self.call_on(self.target, kind, **arguments)

    async def call_on(self, pbx: str, kind: str, **arguments: Any) -> Any:
        """Run ``kind(**arguments)`` on the controller of ``pbx`` ("": any)."""
        data = self.codec.encode_arguments(kind, arguments)
        finished = asyncio.get_running_loop().create_future()
        command_id = await self._send(pbx, kind, data, finished)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout_s):
                    await finished
        finally:
            self._waiting.pop(command_id, None)
        return self.codec.decode_result(kind, await self._outcome(command_id))

    async def live_pbxes(self) -> list[str]:
        """The PBXs whose controllers announced themselves within the last three heartbeats."""
        async with self.sessionmaker() as session:
            found = await session.scalars(
                select(ConsoleController.pbx)
                .where(ConsoleController.heartbeat_at > func.now() - self.alive)
                .order_by(ConsoleController.pbx)
            )
            return list(found)

    async def _send(
        self, pbx: str, kind: str, data: dict[str, Json], finished: asyncio.Future[None]
    ) -> int:
        command_id = None
        try:
            async with self.sessionmaker.begin() as session:
                command_id = await session.scalar(
                    insert(ConsoleCommand)
                    .values(
                        kind=kind,
                        arguments=data,
                        target=pbx,
                        state=NEW,
                        created_at=func.now(),
                        expires_at=func.now() + timedelta(seconds=self.timeout_s),
                    )
                    .returning(ConsoleCommand.id)
                )
                assert command_id is not None
                # before the commit: the answer cannot come earlier
                self._waiting[command_id] = finished
                await session.execute(select(func.pg_notify(COMMANDS, pbx)))
        except BaseException:
            self._waiting.pop(command_id or 0, None)
            raise
        return command_id

    async def _outcome(self, command_id: int) -> Json:
        """The stored result; an unclaimed command expires (and never runs)."""
        async with self.sessionmaker.begin() as session:
            expired = await session.scalar(
                update(ConsoleCommand)
                .where(ConsoleCommand.id == command_id, ConsoleCommand.state == NEW)
                .values(state=EXPIRED, done_at=func.now(), arguments={})
                .returning(ConsoleCommand.id)
            )
            row = (
                await session.execute(
                    select(
                        ConsoleCommand.state,
                        ConsoleCommand.result,
                        ConsoleCommand.error_code,
                        ConsoleCommand.error_message,
                    ).where(ConsoleCommand.id == command_id)
                )
            ).one()
        if expired is not None:
            raise NoController()
        if row.state == DONE_STATE:
            return row.result
        if row.state == FAILED:
            raise _remote_error(row.error_code or CommandFailed.code, row.error_message or "")
        raise CommandTimeout()

    def _on_done(self, payload: str) -> None:
        waiter = self._waiting.get(int(payload)) if payload.isdigit() else None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _catch_up(self) -> None:
        """After a (re)connect: wake the callers whose command finished while nobody listened."""
        if not self._waiting:
            return
        async with self.sessionmaker() as session:
            finished = await session.scalars(
                select(ConsoleCommand.id).where(
                    ConsoleCommand.id.in_(list(self._waiting)),
                    ConsoleCommand.state.in_((DONE_STATE, FAILED)),
                )
            )
            for command_id in finished:
                self._on_done(str(command_id))


# -- the controller side -------------------------------------------------------------------------------------


class CommandExecutor(_Listening):
    """Runs the commands for ``pbx`` (and the untargeted ones) on ``control``, each exactly once; announces ``pbx``
    every ``heartbeat_s``."""

    def __init__(
        self,
        control: object,
        codec: Codec,
        sessionmaker: async_sessionmaker[AsyncSession],
        connect: Connect,
        *,
        pbx: str = "",
        name: str | None = None,
        keep_s: float = 86400.0,
        heartbeat_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.control = control
        self.codec = codec
        self.sessionmaker = sessionmaker
        self.connect = connect
        self.pbx = pbx
        self.heartbeat_s = heartbeat_s
        self.targets = tuple(dict.fromkeys((pbx, "")))
        self.keep = timedelta(seconds=keep_s)
        self.name = (name or f"{socket.gethostname()}:{os.getpid()}")[:64]
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._start(
            listen_forever(
                self.connect, COMMANDS, self._on_notice, self._caught_up, self.listening
            ),
            self._claim_forever(),
            self._prune_forever(),
            self._announce_forever(),
        )

    async def close(self) -> None:
        await super().close()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        try:
            await self.withdraw()
        except (SQLAlchemyError, *LOST) as exc:  # the database is away: the row goes stale instead
            log.warning("command channel: PBX %r not withdrawn (%s)", self.pbx, exc)

    async def announce(self) -> None:
        """This controller serves ``pbx`` now (its heartbeat row)."""
        row = {"pbx": self.pbx, "name": self.name, "heartbeat_at": func.now()}
        upsert = pg_insert(ConsoleController).values(row)
        async with self.sessionmaker.begin() as session:
            await session.execute(
                upsert.on_conflict_do_update(
                    index_elements=[ConsoleController.pbx],
                    set_={
                        "name": upsert.excluded.name,
                        "heartbeat_at": upsert.excluded.heartbeat_at,
                    },
                )
            )

    async def withdraw(self) -> None:
        """Remove this controller's announcement (another controller of the PBX writes its own again)."""
        async with self.sessionmaker.begin() as session:
            await session.execute(
                delete(ConsoleController).where(
                    ConsoleController.pbx == self.pbx, ConsoleController.name == self.name
                )
            )

    async def _announce_forever(self) -> None:
        while True:
            try:
                await self.announce()
            except (SQLAlchemyError, *LOST) as exc:
                log.warning("command channel: PBX %r not announced (%s)", self.pbx, exc)
            await asyncio.sleep(self.heartbeat_s)

    def _on_notice(self, target: str) -> None:
        if target in self.targets:
            self._wake.set()

    async def _caught_up(self) -> None:
        await self.run_pending()  # what came while not listening

    async def run_pending(self) -> int:
        """Claim every waiting command for this controller and start running it; returns how many."""
        count = 0
        while (claimed := await self._claim()) is not None:
            task = asyncio.create_task(self._execute(*claimed))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            count += 1
        return count

    async def _claim_forever(self) -> None:
        delays = backoff_delays()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.run_pending()
                delays = backoff_delays()
            except (SQLAlchemyError, *LOST) as exc:
                log.warning("command channel: cannot claim commands (%s)", exc)
                await asyncio.sleep(next(delays))
                self._wake.set()

    async def _claim(self) -> tuple[int, str, dict[str, Json]] | None:
        """The oldest live command for this controller, now ``claimed`` by it; None when there is none."""
        oldest = (
            select(ConsoleCommand.id)
            .where(
                ConsoleCommand.state == NEW,
                ConsoleCommand.target.in_(self.targets),
                ConsoleCommand.expires_at > func.now(),
            )
            .order_by(ConsoleCommand.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self.sessionmaker.begin() as session:
            row = (
                await session.execute(
                    update(ConsoleCommand)
                    .where(ConsoleCommand.id == oldest, ConsoleCommand.state == NEW)
                    .values(state=CLAIMED, claimed_by=self.name, claimed_at=func.now())
                    .returning(ConsoleCommand.id, ConsoleCommand.kind, ConsoleCommand.arguments)
                )
            ).first()
        return (row.id, row.kind, row.arguments) if row is not None else None

    async def _execute(self, command_id: int, kind: str, arguments: dict[str, Json]) -> None:
        try:
            call = self.codec.decode_arguments(kind, arguments)  # only the interface's methods
            value = await getattr(self.control, kind)(**call)
            outcome = {"state": DONE_STATE, "result": self.codec.encode_result(kind, value)}
        except (HotlineError, ConsoleError) as exc:
            outcome = {"state": FAILED, "error_code": exc.code, "error_message": exc.message}
        except Exception:
            log.exception("command %s (%s) failed", command_id, kind)
            outcome = {
                "state": FAILED,
                "error_code": CommandFailed.code,
                "error_message": CommandFailed.default_message,
            }
        for delay in backoff_delays():
            try:
                return await self._store(command_id, outcome)
            except (SQLAlchemyError, *LOST) as exc:
                log.warning("command %s: outcome not stored (%s); retrying", command_id, exc)
                await asyncio.sleep(delay)

    async def _store(self, command_id: int, outcome: dict[str, Json]) -> None:
        """The outcome, without the arguments (a softphone's password may be among them), then NOTIFY."""
        async with self.sessionmaker.begin() as session:
            await session.execute(
                update(ConsoleCommand)
                .where(ConsoleCommand.id == command_id)
                .values(done_at=func.now(), arguments={}, **outcome)
            )
            await session.execute(select(func.pg_notify(DONE, str(command_id))))

    async def prune(self) -> None:
        """Delete the commands older than ``keep_s`` (every controller does, now and then)."""
        async with self.sessionmaker.begin() as session:
            await session.execute(
                delete(ConsoleCommand).where(ConsoleCommand.created_at < func.now() - self.keep)
            )

    async def _prune_forever(self) -> None:
        while True:
            try:
                await self.prune()
            except (SQLAlchemyError, *LOST) as exc:
                log.warning("command channel: old commands not pruned (%s)", exc)
            await asyncio.sleep(max(self.keep.total_seconds() / 4, 1.0))
