"""Ticket services: intake, the loop's actions, call-back results and queries.

Each call is one transaction: it applies a transition of :mod:`tickets.states`, writes one immutable audit
event per state change, and commits; on any error it rolls back and nothing is written. Concurrent edits are
caught by the ticket's version (optimistic lock): the loser gets :class:`VersionConflict`. A call whose
connection the database dropped before the commit is run again once on a fresh one. On PostgreSQL a new
ticket's number is committed before its transaction (:mod:`tickets.numbering`: no waiting, possible gaps), and
``create_ticket`` writes the ticket, its event and its links as one statement (:mod:`tickets.intake_pg`).
Sessions should come from ``hotline.db.make_sessionmaker`` (``expire_on_commit=False``).
``settings`` comes from the caller (the composition root loads it once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import make_transient_to_detached, raiseload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from config import Settings
from config.settings import DeadlineTier, OfficeHours
from language.embeddings import optional_embedder
from tickets import deadlines, intake_pg, metrics_rollup, outbox, repeats
from tickets import models as m
from tickets.errors import Forbidden, IllegalTransition, InvalidInput, NotFound, VersionConflict
from tickets.models import Department, Ticket, TicketCoDepartment, TicketEvent, TicketRepeat
from tickets.numbering import format_ticket_no, local_day, next_ticket_no
from tickets.orm import as_loaded
from tickets.phone import UNKNOWN_PHONE
from tickets.schemas import (
    Actor,
    CallbackCloseFields,
    DispatchFields,
    ExtensionApprovalFields,
    ExtensionRequestFields,
    InstantFields,
    ReplyFields,
    TicketDraft,
    as_json,
    check_actor,
    check_note,
    parse_fields,
)
from tickets.states import RESULT_STATES, Role, State, check, transition
from tickets.states import replay as replay_steps
from tickets.worktime import WorkCalendar

__all__ = [
    "Actor",
    "TicketDraft",
    "apply",
    "close_instant",
    "create_ticket",
    "due_for_callback",
    "get_ticket",
    "instant_answers",
    "merge_candidates",
    "merge_links",
    "merge_tickets",
    "record_callback",
    "record_note",
    "replay_ticket",
    "set_confidential",
    "ticket_events",
    "upsert_departments",
]

_T = TypeVar("_T")
CALLBACK_RESULTS = ("satisfied", "basically_satisfied", "unsatisfied", "unreachable")
# Audit actions that record something about a ticket without changing its state (督办); replay skips them.
# transcribe: a voice message's text (tickets.voice_messages); merge_in: 并单 on the main ticket; confidential: 保密
NOTE_ACTIONS = frozenset({"supervise", "transcribe", "merge_in", "confidential"})
SYSTEM = Actor("系统", Role.SYSTEM)
# Transitions only :func:`merge_tickets` and the main ticket's result perform (never ``apply``).
MERGE_ACTIONS = frozenset({"merge", "merge_settle"})
# Who may mark a ticket confidential (保密) after intake, and who may lift it (tickets.services.set_confidential).
CONFIDENTIAL_SETTERS = frozenset({Role.AGENT, Role.DISPATCHER, Role.ADMIN})
CONFIDENTIAL_LIFTERS = frozenset({Role.ADMIN})


@dataclass(frozen=True)
class _Context:
    session: AsyncSession
    settings: Settings
    calendar: WorkCalendar
    now: datetime


def _context(session: AsyncSession, settings: Settings, now: datetime | None) -> _Context:
    tz = ZoneInfo(settings.timezone)
    if now is not None and now.tzinfo is None:
        raise InvalidInput("时间必须带时区", code="ticket.naive_time", field="now")
    return _Context(
        session,
        settings,
        _calendar(settings.office_hours, settings.timezone),
        (now or datetime.now(tz)).astimezone(tz),
    )


@lru_cache(maxsize=8)
def _calendar(office_hours: OfficeHours, timezone: str) -> WorkCalendar:
    """One calendar per configuration, so its cache of working days outlives a single call."""
    return WorkCalendar(office_hours, ZoneInfo(timezone))


async def _in_transaction(
    session: AsyncSession, work: Callable[[], Awaitable[_T]], ticket_no: str | None = None
) -> _T:
    """Run ``work`` and commit, or roll all of it back; a lost optimistic-lock race is a VersionConflict.

    A connection that the server dropped (a restarted or failed-over database) fails ``work`` before anything
    is written: it is retried once on a fresh connection. A failure during the commit is not retried (whether
    it was written is unknown). After a refusal the acted-on ticket is re-read, so the caller's copy shows the
    stored state instead of being expired.
    """
    retry = True
    while True:
        try:
            result = await work()
        except DBAPIError as exc:
            if retry and exc.connection_invalidated:
                retry = False
                await session.rollback()
                continue
            await _undo(session, ticket_no, exc)
        except BaseException as exc:
            await _undo(session, ticket_no, exc)
        try:
            await session.commit()
        except BaseException as exc:
            await _undo(session, ticket_no, exc)
        return result


async def _undo(session: AsyncSession, ticket_no: str | None, exc: BaseException) -> NoReturn:
    await session.rollback()
    if ticket_no is not None and isinstance(exc, Exception):
        with suppress(NotFound):
            await _load(session, ticket_no)
        await session.commit()
    if isinstance(exc, StaleDataError):
        raise VersionConflict("工单已被他人修改，请刷新后重试") from None
    raise exc


async def _load(session: AsyncSession, ticket_no: str) -> Ticket:
    stmt = (
        select(Ticket)
        .where(Ticket.ticket_no == ticket_no)
        .execution_options(populate_existing=True)
    )
    ticket = (await session.execute(stmt)).scalar_one_or_none()
    if ticket is None:
        raise NotFound(f"工单 {ticket_no} 不存在")
    return ticket


def _tier(settings: Settings, kind: str, urgency: str) -> DeadlineTier:
    try:
        return deadlines.tier_for(settings, kind, urgency)
    except deadlines.DeadlineKeyError as exc:
        raise InvalidInput(exc.message, code="ticket.invalid_choice", field="kind") from None


async def _require_departments(session: AsyncSession, codes: list[str]) -> None:
    rows = await session.execute(
        select(Department.code).where(Department.code.in_(codes), Department.active)
    )
    missing = sorted(set(codes) - set(rows.scalars()))
    if missing:
        raise InvalidInput(
            f"未知或已停用的承办单位：{'、'.join(missing)}",
            code="ticket.unknown_department",
            field="lead_department",
        )


def _record(
    ctx: _Context,
    ticket: Ticket,
    actor: Actor,
    action: str,
    from_state: str | None,
    note: str,
    payload: dict[str, Any],
) -> None:
    ctx.session.add(
        TicketEvent(
            ticket_id=ticket.id,
            at=ctx.now,
            actor=actor.name,
            role=actor.role,
            department=actor.department,
            action=action,
            from_state=from_state,
            to_state=ticket.state,
            note=note,
            payload=payload,
        )
    )


# --- effects of each action on the ticket; each returns extra audit payload ---------------------------------

Effect = Callable[[_Context, Ticket, Any, str], Awaitable[dict[str, Any]]]


def _require_note(note: str, what: str) -> None:
    if not note:
        raise InvalidInput(f"{what}须填写原因", code="ticket.missing_field", field="note")


def _pending_extension(ticket: Ticket) -> datetime:
    if ticket.extension_requested_until is None:
        raise IllegalTransition("该工单没有待审批的延期申请", code="ticket.no_extension_request")
    return ticket.extension_requested_until


async def _close_instant(ctx: _Context, t: Ticket, f: InstantFields, _note: str) -> dict[str, Any]:
    t.answer, t.closed_at = f.answer, ctx.now
    return {}


async def _nothing(_ctx: _Context, _t: Ticket, _f: Any, _note: str) -> dict[str, Any]:
    return {}


async def _sign(ctx: _Context, t: Ticket, _f: Any, _note: str) -> dict[str, Any]:
    t.signed_at = ctx.now
    return {}


async def _dispatch(ctx: _Context, t: Ticket, f: DispatchFields, _note: str) -> dict[str, Any]:
    await _require_departments(ctx.session, [f.lead_department, *f.co_departments])
    t.lead_department, t.dispatch_mode = f.lead_department, f.mode
    t.co_departments = [TicketCoDepartment(department_code=code) for code in f.co_departments]
    t.dispatched_at, t.signed_at = ctx.now, None
    t.sign_for_due = deadlines.sign_for_due(ctx.now, ctx.calendar, ctx.settings)
    return {"sign_for_due": as_json(t.sign_for_due)}


async def _return(_ctx: _Context, t: Ticket, _f: Any, note: str) -> dict[str, Any]:
    _require_note(note, "退回")
    payload = {"department": t.lead_department}
    t.lead_department = t.dispatch_mode = None
    t.co_departments = []
    t.dispatched_at = t.signed_at = t.sign_for_due = t.extension_requested_until = None
    t.return_count += 1
    return payload


async def _request_extension(
    ctx: _Context, t: Ticket, f: ExtensionRequestFields, note: str
) -> dict[str, Any]:
    _require_note(note, "延期申请")
    if t.extension_requested_until is not None:
        raise IllegalTransition("已有待审批的延期申请", code="ticket.extension_pending")
    if f.until <= max(ctx.now, t.due_at or ctx.now):
        raise InvalidInput(
            "延期后的办理时限须晚于当前时限", code="ticket.invalid_extension", field="until"
        )
    t.extension_requested_until = f.until
    return {}


async def _approve_extension(
    ctx: _Context, t: Ticket, f: ExtensionApprovalFields, _note: str
) -> dict[str, Any]:
    requested = _pending_extension(t)
    until = f.until or requested
    if until <= ctx.now:
        raise InvalidInput(
            "延期后的办理时限须晚于现在", code="ticket.invalid_extension", field="until"
        )
    payload = {"old_due_at": as_json(t.due_at), "new_due_at": as_json(until)}
    t.due_at, t.extension_requested_until = until, None
    t.extension_count += 1
    return payload


async def _reject_extension(_ctx: _Context, t: Ticket, _f: Any, _note: str) -> dict[str, Any]:
    payload = {"requested_until": as_json(_pending_extension(t))}
    t.extension_requested_until = None
    return payload


async def _reply(ctx: _Context, t: Ticket, f: ReplyFields, _note: str) -> dict[str, Any]:
    t.reply, t.replied_at, t.extension_requested_until = f.reply, ctx.now, None
    return {}


async def _redispatch(ctx: _Context, t: Ticket, _f: Any, note: str) -> dict[str, Any]:
    """二次派单: back to the same department(s) with fresh deadlines."""
    if t.state == State.REPLIED:
        _require_note(note, "核验不通过")
    payload = {"previous_reply": t.reply, "department": t.lead_department}
    t.redispatch_count += 1
    t.dispatched_at, t.signed_at, t.replied_at, t.reply = ctx.now, None, None, None
    t.sign_for_due = deadlines.sign_for_due(ctx.now, ctx.calendar, ctx.settings)
    t.due_at = deadlines.due_at(
        deadlines.tier_named(ctx.settings, t.deadline_tier), ctx.now, ctx.calendar
    )
    t.satisfaction, t.callback_attempts, t.last_callback_at = None, 0, None
    return payload


async def _callback_attempt(ctx: _Context, t: Ticket, _f: Any, _note: str) -> dict[str, Any]:
    t.callback_attempts += 1
    t.last_callback_at = ctx.now
    return {"attempt": t.callback_attempts}


async def _callback_close(
    ctx: _Context, t: Ticket, f: CallbackCloseFields, note: str
) -> dict[str, Any]:
    payload = await _callback_attempt(ctx, t, f, note)
    t.satisfaction, t.closed_at = f.satisfaction, ctx.now
    return payload


async def _withdraw(ctx: _Context, t: Ticket, _f: Any, _note: str) -> dict[str, Any]:
    if await _waiting_merged(ctx.session, t):
        raise IllegalTransition(
            "该工单有并入的工单在等待办理结果，不能撤销", code="ticket.merge_main_withdraw"
        )
    t.extension_requested_until = None
    return {}


async def _main_of(ctx: _Context, t: Ticket) -> Ticket:
    """The main ticket ``t`` is merged into (already in the session: no query)."""
    main = await ctx.session.get(Ticket, t.merged_into_id)
    assert main is not None, "a merged ticket keeps its main ticket"
    return main


async def _merge(ctx: _Context, t: Ticket, _f: Any, _note: str) -> dict[str, Any]:
    t.extension_requested_until = None
    return {"main": (await _main_of(ctx, t)).ticket_no}


async def _merge_settle(ctx: _Context, t: Ticket, _f: Any, _note: str) -> dict[str, Any]:
    """The main ticket's result becomes this one's reply; its caller goes on the 回访 list (state verified)."""
    main = await _main_of(ctx, t)
    t.reply, t.replied_at = main.reply or main.answer, ctx.now
    return {"main": main.ticket_no}


EFFECTS: dict[str, Effect] = {
    "close_instant": _close_instant,
    "review": _nothing,
    "dispatch": _dispatch,
    "return": _return,
    "sign": _sign,
    "start": _nothing,
    "request_extension": _request_extension,
    "approve_extension": _approve_extension,
    "reject_extension": _reject_extension,
    "reply": _reply,
    "verify": _nothing,
    "reject_reply": _redispatch,
    "callback_retry": _callback_attempt,
    "callback_close": _callback_close,
    "callback_redispatch": _redispatch,
    "withdraw": _withdraw,
    "merge": _merge,
    "merge_settle": _merge_settle,
}


async def _transition(
    ctx: _Context, ticket: Ticket, action: str, actor: Actor, note: str, fields: dict[str, Any]
) -> Ticket:
    """Check, apply and audit one action on a loaded ticket (inside the caller's transaction)."""
    check_actor(actor)
    step = check(
        State(ticket.state),
        action,
        actor.role,
        department=actor.department,
        lead_department=ticket.lead_department,
    )
    note = check_note(note)
    parsed = parse_fields(action, fields)
    from_state = ticket.state
    payload = {k: as_json(v) for k, v in parsed.model_dump(exclude_none=True).items()}
    payload |= await EFFECTS[action](ctx, ticket, parsed, note)
    ticket.state = step.leads_to(State(from_state)).value
    ticket.updated_at = ctx.now
    _record(ctx, ticket, actor, action, from_state, note, payload)
    await metrics_rollup.settle(ctx.session, ticket, ZoneInfo(ctx.settings.timezone))
    if ticket.state in RESULT_STATES and from_state in _BEFORE_RESULT:
        await _settle_merged(ctx, ticket)
    return ticket


# states a main ticket leaves when it gets its result (核验通过, or 即办 of a ticket already filed)
_BEFORE_RESULT = frozenset({State.REPLIED.value, State.ACCEPTED.value})


async def _waiting_merged(session: AsyncSession, main: Ticket) -> list[Ticket]:
    """The tickets merged into ``main`` that still wait on its result (state ``merged``), oldest first."""
    stmt = (
        select(Ticket)
        .where(Ticket.merged_into_id == main.id, Ticket.state == State.MERGED.value)
        .order_by(Ticket.id)
    )
    return list((await session.execute(stmt)).scalars())


async def _settle_merged(ctx: _Context, main: Ticket) -> None:
    """Each ticket waiting on ``main`` gets its result: 回访 for its caller and an SMS notice in the outbox.
    Once each: ``merge_settle`` leaves the state ``merged`` for good."""
    for merged in await _waiting_merged(ctx.session, main):
        await _transition(ctx, merged, "merge_settle", SYSTEM, "", {})
        if merged.caller_phone != UNKNOWN_PHONE:
            outbox.enqueue(
                ctx.session,
                channel=outbox.SMS,
                recipient=merged.caller_phone,
                subject=f"工单 {merged.ticket_no} 办理结果",
                body=_result_notice(merged, main),
                now=ctx.now,
                ticket_id=merged.id,
            )


def _result_notice(merged: Ticket, main: Ticket) -> str:
    return (
        f"【12345】您反映的问题（工单 {merged.ticket_no}）已与同一事项的工单 {main.ticket_no} 合并办理，"
        f"办理结果：{merged.reply or '已办结'}。稍后我们将回访，听取您的意见。"
    )


@dataclass(frozen=True)
class _Checked:
    """What intake decides before anything is written: the first state, the deadline tier, the content words
    and the content's embedding (``tickets.repeats.content_vector``: ~1 ms of CPU, in a worker thread before
    any statement, so neither the event loop nor a transaction waits on it)."""

    state: str
    tier: DeadlineTier
    tokens: list[str]
    vector: bytes | None


async def _check_intake(ctx: _Context, actor: Actor, draft: TicketDraft) -> _Checked:
    check_actor(actor)
    step = check(None, "create", actor.role)
    return _Checked(
        step.leads_to(None).value,
        _tier(ctx.settings, draft.kind, draft.urgency),
        repeats.tokenize(draft.content),
        await asyncio.to_thread(
            repeats.content_vector,
            optional_embedder(ctx.settings.language.embedding_model),
            draft.content,
            (draft.address, draft.street, draft.district),
        ),
    )


def _ticket_values(
    ctx: _Context,
    draft: TicketDraft,
    checked: _Checked,
    ticket_no: str,
    matches: list[repeats.RepeatMatch],
) -> dict[str, Any]:
    tokens = checked.tokens
    return {
        **draft.model_dump(),
        "ticket_no": ticket_no,
        "content_tokens": " ".join(tokens),
        "token_norm": repeats.TokenBag.of(tokens).norm,
        "content_vector": checked.vector,
        "deadline_tier": checked.tier.name,
        "due_at": deadlines.due_at(checked.tier, ctx.now, ctx.calendar),
        "state": checked.state,
        "is_repeat": bool(matches),
        "callback_attempts": 0,
        "redispatch_count": 0,
        "return_count": 0,
        "extension_count": 0,
        "created_at": ctx.now,
        "updated_at": ctx.now,
    }


def _created_payload(
    draft: TicketDraft, matches: list[repeats.RepeatMatch], key: str | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "channel": draft.channel,
        "repeat_of": [r.earlier_id for r in matches],
    }
    if draft.confidential:
        payload["confidential"] = True  # 保密 asked at intake
    return (payload | {"submission_key": key}) if key else payload


async def _intake(
    ctx: _Context, draft: TicketDraft, actor: Actor, key: str | None = None
) -> Ticket:
    """受理 inside the session's transaction (SQLite, a session bound to a connection, and 即办)."""
    checked = await _check_intake(ctx, actor, draft)
    # Checked input only takes a number: on PostgreSQL it is committed on its own (a failure later leaves a gap),
    # on SQLite it is the transaction's first write (tickets.numbering).
    ticket_no = await next_ticket_no(ctx.session, ctx.now, ZoneInfo(ctx.settings.timezone))
    matches = await repeats.find_repeats(
        ctx.session,
        caller_phone=draft.caller_phone,
        district=draft.district,
        street=draft.street,
        tokens=checked.tokens,
        vector=checked.vector,
        now=ctx.now,
        settings=ctx.settings.repeat,
    )
    ticket = Ticket(**_ticket_values(ctx, draft, checked, ticket_no, matches), co_departments=[])
    ctx.session.add(ticket)
    await ctx.session.flush()
    set_committed_value(
        ticket, "repeat_links", await repeats.save_links(ctx.session, ticket.id, matches)
    )
    _record(ctx, ticket, actor, "create", None, "", _created_payload(draft, matches, key))
    return ticket


async def _intake_on_server(
    ctx: _Context, engine: AsyncEngine, draft: TicketDraft, actor: Actor, key: str | None
) -> Ticket:
    """受理 on PostgreSQL in two autocommitted statements on one connection (:mod:`tickets.intake_pg`): the
    number with the repeat candidates, then the ticket with its audit event and links. A connection the server
    dropped fails the first statement, which is run again once on a fresh one; the second is not retried
    (whether it was written is unknown). The ticket comes back attached to ``ctx.session`` as if loaded."""
    checked = await _check_intake(ctx, actor, draft)
    day = local_day(ctx.now, ZoneInfo(ctx.settings.timezone))
    with_district, params = repeats.candidate_params(
        draft.caller_phone, draft.district, checked.tokens, ctx.now, ctx.settings.repeat
    )
    retry = True
    while True:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                seq, rows = await intake_pg.number_and_candidates(conn, day, with_district, params)
            except DBAPIError as exc:
                if retry and exc.connection_invalidated:
                    retry = False
                    continue
                raise
            matches = repeats.matching(
                rows, checked.tokens, checked.vector, draft.street, ctx.settings.repeat
            )
            values = (
                dict.fromkeys(intake_pg.TICKET_COLUMNS)
                | _ticket_values(ctx, draft, checked, format_ticket_no(day, seq), matches)
                | {"version": 1, "rolled_up": False}
            )
            event = {
                "at": ctx.now,
                "actor": actor.name,
                "role": actor.role,
                "department": actor.department,
                "action": "create",
                "from_state": None,
                "to_state": checked.state,
                "note": "",
                "payload": _created_payload(draft, matches, key),
            }
            ticket_id = await intake_pg.insert_ticket(conn, values, event, matches)
        break
    return _attach_as_loaded(
        ctx.session, values | {"id": ticket_id}, repeats.link_objects(ticket_id, matches)
    )


def _attach_as_loaded(
    session: AsyncSession, values: dict[str, Any], links: list[m.TicketRepeat]
) -> Ticket:
    """A Ticket holding ``values`` (every column) and ``links``, in ``session`` as if just loaded: no INSERT
    at the next flush, no per-attribute events on the way."""
    ticket = as_loaded(Ticket, values)
    make_transient_to_detached(ticket)
    session.add(
        ticket
    )  # after this, so that the links are not cascaded into the session as new rows
    set_committed_value(ticket, "co_departments", [])
    set_committed_value(ticket, "repeat_links", links)
    return ticket


# --- public API ---------------------------------------------------------------------------------------------


async def create_ticket(
    session: AsyncSession,
    draft: TicketDraft,
    actor: Actor,
    *,
    now: datetime | None = None,
    settings: Settings,
    submission_key: str | None = None,
) -> Ticket:
    """受理: a new ticket in state ``accepted`` with its number, deadline and repeat links. A
    ``submission_key`` is kept in the creation event (see :mod:`tickets.intake`)."""
    ctx = _context(session, settings, now)
    engine = session.bind
    if isinstance(engine, AsyncEngine) and engine.dialect.name == "postgresql":
        ticket = await _intake_on_server(ctx, engine, draft, actor, submission_key)
        await session.commit()  # what else the caller had pending, as before
        return ticket
    return await _in_transaction(session, lambda: _intake(ctx, draft, actor, submission_key))


async def close_instant(
    session: AsyncSession,
    draft: TicketDraft,
    answer: str,
    actor: Actor,
    *,
    now: datetime | None = None,
    settings: Settings,
) -> Ticket:
    """即办: create the ticket and close it with the answer given on the spot, in one transaction."""
    ctx = _context(session, settings, now)
    check(State.ACCEPTED, "close_instant", actor.role)
    parse_fields("close_instant", {"answer": answer})  # a bad answer must not take a ticket number

    async def work() -> Ticket:
        ticket = await _intake(ctx, draft, actor)
        return await _transition(ctx, ticket, "close_instant", actor, "", {"answer": answer})

    return await _in_transaction(session, work)


async def apply(
    session: AsyncSession,
    ticket_no: str,
    action: str,
    actor: Actor,
    *,
    expected_version: int,
    note: str = "",
    now: datetime | None = None,
    settings: Settings,
    **fields: Any,
) -> Ticket:
    """Perform ``action`` (see ``tickets.states.TRANSITIONS``) on the ticket read at ``expected_version``.

    Fields by action: dispatch(lead_department, co_departments=[], mode="direct"|"joint"|"first_receiver"),
    reply(reply), request_extension(until), approve_extension(until=None), close_instant(answer),
    callback_close(satisfaction). ``return``, ``reject_reply`` and ``request_extension`` need a ``note``.
    """
    if action in MERGE_ACTIONS:
        raise IllegalTransition(
            "并单请使用并单操作（选择主单和重复工单）", code="ticket.merge_action"
        )
    ctx = _context(session, settings, now)

    async def work() -> Ticket:
        ticket = await _load(session, ticket_no)
        _require_version(ticket, expected_version)
        return await _transition(ctx, ticket, action, actor, note, fields)

    return await _in_transaction(session, work, ticket_no)


def _require_version(ticket: Ticket, expected_version: int) -> None:
    if ticket.version != expected_version:
        raise VersionConflict(
            f"工单 {ticket.ticket_no} 已被他人修改（当前版本 {ticket.version}，"
            f"您的版本 {expected_version}），请刷新后重试"
        )


async def record_callback(
    session: AsyncSession,
    ticket_no: str,
    result: str,
    actor: Actor,
    *,
    expected_version: int | None = None,
    now: datetime | None = None,
    settings: Settings,
) -> Ticket:
    """回访 result: satisfied / basically_satisfied → 办结; unsatisfied → 二次派单; unreachable → another
    attempt later, or 办结 as "unreachable" once ``settings.callback.max_attempts`` attempts failed.
    ``expected_version``: the version a person's form was read at (a stale one is a VersionConflict); None for
    the automatic call-back, which acts on the ticket as it is."""
    if result not in CALLBACK_RESULTS:
        raise InvalidInput(
            f"未知的回访结果：{result!r}（可选：{'、'.join(CALLBACK_RESULTS)}）",
            code="ticket.invalid_choice",
            field="result",
        )
    ctx = _context(session, settings, now)

    async def work() -> Ticket:
        ticket = await _load(session, ticket_no)
        if expected_version is not None:
            _require_version(ticket, expected_version)
        fields: dict[str, Any] = {}
        if result == "unsatisfied":
            action = "callback_redispatch"
        elif (
            result == "unreachable"
            and ticket.callback_attempts + 1 < ctx.settings.callback.max_attempts
        ):
            action = "callback_retry"
        else:
            action, fields = "callback_close", {"satisfaction": result}
        return await _transition(ctx, ticket, action, actor, "", fields)

    return await _in_transaction(session, work, ticket_no)


async def get_ticket(session: AsyncSession, ticket_no: str, *, repeat_links: bool = True) -> Ticket:
    """The ticket as stored now (NotFound if there is none). A screen that does not show the repeat links
    (重复件关联) passes ``repeat_links=False``: one query less, and reading them is then an error."""
    if repeat_links:
        return await _load(session, ticket_no)
    stmt = (
        select(Ticket)
        .where(Ticket.ticket_no == ticket_no)
        .options(raiseload(Ticket.repeat_links))
        .execution_options(populate_existing=True)
    )
    ticket = (await session.execute(stmt)).scalar_one_or_none()
    if ticket is None:
        raise NotFound(f"工单 {ticket_no} 不存在")
    return ticket


async def instant_answers(session: AsyncSession, ticket_nos: Iterable[str]) -> set[str]:
    """Those of ``ticket_nos`` settled on the spot (即办, :func:`close_instant`) and never sent to a department."""
    wanted, found = list(dict.fromkeys(ticket_nos)), set[str]()
    for i in range(0, len(wanted), _IN_CHUNK):
        found |= set(
            (
                await session.scalars(
                    select(Ticket.ticket_no).where(
                        Ticket.ticket_no.in_(wanted[i : i + _IN_CHUNK]),
                        Ticket.answer.is_not(None),
                        Ticket.dispatched_at.is_(None),
                    )
                )
            ).all()
        )
    return found


_IN_CHUNK = 500  # ticket numbers per IN list


async def ticket_events(session: AsyncSession, ticket: str | Ticket) -> list[TicketEvent]:
    """The audit trail of a ticket (by number, or the ticket already loaded: not read again), oldest first."""
    if isinstance(ticket, str):
        ticket = await _load(session, ticket)
    rows = await session.execute(
        select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.id)
    )
    return list(rows.scalars())


async def replay_ticket(session: AsyncSession, ticket_no: str) -> State | None:
    """The state the audit trail leads to (IllegalTransition ``ticket.audit_inconsistent`` if it is broken)."""
    events = await ticket_events(session, ticket_no)
    return replay_steps(
        (e.action, e.from_state, e.to_state) for e in events if e.action not in NOTE_ACTIONS
    )


def record_note(
    session: AsyncSession,
    *,
    ticket_id: int,
    state: str,
    action: str,
    actor: Actor,
    at: datetime,
    note: str = "",
    payload: dict[str, Any] | None = None,
) -> None:
    """Add an audit event that changes no state (an action of ``NOTE_ACTIONS``, e.g. 督办) to the caller's
    transaction; the caller commits. ``state`` is the ticket's current state."""
    if action not in NOTE_ACTIONS:
        raise InvalidInput(
            f"未知的记录类型：{action!r}", code="ticket.unknown_action", field="action"
        )
    check_actor(actor)
    session.add(
        TicketEvent(
            ticket_id=ticket_id,
            at=at,
            actor=actor.name,
            role=actor.role,
            department=actor.department,
            action=action,
            from_state=state,
            to_state=state,
            note=check_note(note),
            payload=payload or {},
        )
    )


async def due_for_callback(
    session: AsyncSession, now: datetime, *, settings: Settings, ticket_no: str | None = None
) -> list[Ticket]:
    """Tickets to call back now: verified ones, and those whose last unanswered attempt is old enough; never
    one without a number (a voice message from a withheld number). ``ticket_no``: only that one (a call-back
    about to ring checks it is still due).

    Empty outside the allowed call-back hours (``settings.callback``)."""
    ctx = _context(session, settings, now)
    rules = ctx.settings.callback
    if not rules.allowed_start <= ctx.now.time() < rules.allowed_end:
        return []
    retry_before = ctx.now - timedelta(minutes=rules.retry_interval_minutes)
    stmt = (
        select(Ticket)
        .where(
            or_(
                Ticket.state == State.VERIFIED.value,
                and_(Ticket.state == State.CALLBACK.value, Ticket.last_callback_at <= retry_before),
            ),
            Ticket.caller_phone != UNKNOWN_PHONE,
        )
        .order_by(Ticket.updated_at, Ticket.id)
    )
    if ticket_no is not None:
        stmt = stmt.where(Ticket.ticket_no == ticket_no)
    return list((await session.execute(stmt)).scalars())


async def upsert_departments(session: AsyncSession, departments: Iterable[tuple[str, str]]) -> int:
    """Add or rename departments (承办单位) from ``(code, name)`` pairs and mark them active; returns how many."""
    pairs = [(code.strip(), name.strip()) for code, name in departments]
    for code, name in pairs:
        if not 0 < len(code) <= m.DEPT_CODE_MAX or not 0 < len(name) <= m.DEPT_NAME_MAX:
            raise InvalidInput(
                f"承办单位编码或名称长度不合法：{code!r} {name!r}", code="ticket.invalid_department"
            )

    async def work() -> int:
        existing = {d.code: d for d in (await session.execute(select(Department))).scalars()}
        for code, name in pairs:
            dept = existing.get(code) or Department(code=code)
            dept.name, dept.active = name, True
            session.add(dept)
            existing[code] = dept
        return len(pairs)

    return await _in_transaction(session, work)


# --- 并单 (merging duplicates) and 保密 (confidential callers) ------------------------------------------------


@dataclass(frozen=True)
class MergeLink:
    """A ticket linked to another by a merge: its main ticket, or one merged into it."""

    ticket_no: str
    state: str
    version: int


@dataclass(frozen=True)
class MergeLinks:
    main: MergeLink | None  # the ticket this one was merged into
    merged: list[MergeLink]  # the tickets merged into this one, oldest first


MERGE_MAX = 20  # duplicates merged in one go


def _merge_refusal(main: Ticket, dup: Ticket) -> IllegalTransition | None:
    """Why ``dup`` cannot be merged into ``main`` (a typed error), or None."""
    if dup.id == main.id:
        return IllegalTransition("不能把工单并入它自己", code="ticket.merge_self")
    if dup.state == State.MERGED:
        if dup.merged_into_id == main.id:
            return IllegalTransition(
                f"工单 {dup.ticket_no} 已并入本工单", code="ticket.merge_already_merged"
            )
        return IllegalTransition(
            f"工单 {dup.ticket_no} 已并入其他工单", code="ticket.merge_already_merged"
        )
    if State(dup.state) in (State.CLOSED, State.WITHDRAWN):
        return IllegalTransition(
            f"工单 {dup.ticket_no} 已办结或撤销，不能并单", code="ticket.merge_closed"
        )
    return None


def _main_refusal(main: Ticket, dups: list[Ticket]) -> IllegalTransition | None:
    if main.state == State.MERGED:
        if main.merged_into_id in {d.id for d in dups}:
            return IllegalTransition(
                f"主单 {main.ticket_no} 已并入所选工单，不能循环并单", code="ticket.merge_cycle"
            )
        return IllegalTransition(
            f"主单 {main.ticket_no} 已并入其他工单，请选择它所并入的工单作主单",
            code="ticket.merge_main_merged",
        )
    if State(main.state) in (State.CLOSED, State.WITHDRAWN):
        return IllegalTransition(
            f"主单 {main.ticket_no} 已办结或撤销，不能并单", code="ticket.merge_closed"
        )
    return None


async def _load_merge(
    session: AsyncSession, main_no: str, ticket_nos: list[str]
) -> tuple[Ticket, list[Ticket]]:
    if not ticket_nos or len(ticket_nos) > MERGE_MAX:
        raise InvalidInput(
            f"请选择 1–{MERGE_MAX} 件要并入的工单", code="ticket.merge_count", field="tickets"
        )
    if len(set(ticket_nos)) != len(ticket_nos):
        raise InvalidInput("并入的工单有重复", code="ticket.merge_duplicate", field="tickets")
    main = await _load(session, main_no)
    return main, [await _load(session, no) for no in ticket_nos]


async def merge_tickets(
    session: AsyncSession,
    main_no: str,
    ticket_nos: list[str],
    actor: Actor,
    *,
    expected_version: int,
    note: str = "",
    now: datetime | None = None,
    settings: Settings,
) -> Ticket:
    """并单: merge the duplicates ``ticket_nos`` into the main ticket read at ``expected_version``, in one
    transaction. Each goes to ``merged`` linked to the main one (event ``merge``); the main ticket gets one
    ``merge_in`` event naming them. A main ticket that already has its result (核验 / 回访) settles them at
    once. Refused, with nothing written: a closed or withdrawn ticket, the main ticket itself, a ticket
    already merged, a main ticket merged into one of them (a cycle) or into another, a main ticket that has
    tickets merged into it being merged itself (``ticket.merge_*``); roles other than dispatcher and admin
    (Forbidden)."""
    ctx = _context(session, settings, now)
    check_actor(actor)
    merge = transition("merge")
    if actor.role not in merge.roles:  # before any read: an outsider learns nothing
        raise Forbidden(f"无权执行“{merge.label}”操作", code="ticket.role_forbidden")

    async def work() -> Ticket:
        main, dups = await _load_merge(session, main_no, ticket_nos)
        _require_version(main, expected_version)
        refusal = _main_refusal(main, dups) or next(
            (r for r in (_merge_refusal(main, d) for d in dups) if r), None
        )
        if refusal is None and await _any_waiting(session, dups):
            refusal = IllegalTransition(
                "所选工单已有并入的工单，请把它作为主单", code="ticket.merge_is_main"
            )
        if refusal is not None:
            raise refusal
        for dup in dups:
            dup.merged_into_id = main.id
            await _transition(ctx, dup, "merge", actor, note, {})
        main.updated_at = ctx.now
        _record(
            ctx,
            main,
            actor,
            "merge_in",
            main.state,
            check_note(note),
            {"merged": [d.ticket_no for d in dups]},
        )
        if State(main.state) in (State.VERIFIED, State.CALLBACK):
            await _settle_merged(ctx, main)
        return main

    return await _in_transaction(session, work, main_no)


async def _any_waiting(session: AsyncSession, tickets: list[Ticket]) -> bool:
    """Whether any of ``tickets`` is itself a main ticket with merged tickets waiting on it."""
    found = await session.scalar(
        select(Ticket.id)
        .where(
            Ticket.merged_into_id.in_([t.id for t in tickets]),
            Ticket.state == State.MERGED.value,
        )
        .limit(1)
    )
    return found is not None


async def merge_links(session: AsyncSession, ticket: Ticket) -> MergeLinks:
    """The merge links of a loaded ticket, in one query: its main ticket, and the tickets merged into it."""
    cond = Ticket.merged_into_id == ticket.id
    if ticket.merged_into_id is not None:
        cond = or_(cond, Ticket.id == ticket.merged_into_id)
    rows = await session.execute(
        select(Ticket.id, Ticket.ticket_no, Ticket.state, Ticket.version)
        .where(cond)
        .order_by(Ticket.id)
    )
    main, merged = None, []
    for row in rows:
        link = MergeLink(row.ticket_no, row.state, row.version)
        if row.id == ticket.merged_into_id:
            main = link
        else:
            merged.append(link)
    return MergeLinks(main, merged)


async def merge_candidates(session: AsyncSession, ticket: Ticket, limit: int = 10) -> list[Ticket]:
    """Tickets repeat detection linked to ``ticket`` (重复件, either way) that could be merged into it: open
    and not merged, newest first."""
    linked = (
        select(TicketRepeat.earlier_id)
        .where(TicketRepeat.ticket_id == ticket.id)
        .union(select(TicketRepeat.ticket_id).where(TicketRepeat.earlier_id == ticket.id))
    )
    stmt = (
        select(Ticket)
        .where(
            Ticket.id.in_(linked),
            Ticket.state.in_([s.value for s in State if s in _MERGEABLE]),
        )
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


_MERGEABLE = frozenset(State) - {State.CLOSED, State.WITHDRAWN, State.MERGED}


async def set_confidential(
    session: AsyncSession,
    ticket_no: str,
    confidential: bool,
    actor: Actor,
    *,
    expected_version: int,
    note: str = "",
    now: datetime | None = None,
    settings: Settings,
) -> Ticket:
    """保密 after intake (the caller asked later): marked by an agent, dispatcher or admin, lifted by an admin
    only; audited (event ``confidential``). Setting what is already set changes nothing and writes nothing."""
    check_actor(actor)
    allowed = CONFIDENTIAL_SETTERS if confidential else CONFIDENTIAL_LIFTERS
    if actor.role not in allowed:
        raise Forbidden(
            "无权设置保密" if confidential else "只有管理员可以取消保密",
            code="ticket.role_forbidden",
        )
    ctx = _context(session, settings, now)

    async def work() -> Ticket:
        ticket = await _load(session, ticket_no)
        _require_version(ticket, expected_version)
        if ticket.confidential == confidential:
            return ticket
        ticket.confidential, ticket.updated_at = confidential, ctx.now
        _record(
            ctx,
            ticket,
            actor,
            "confidential",
            ticket.state,
            check_note(note),
            {"confidential": confidential},
        )
        return ticket

    return await _in_transaction(session, work, ticket_no)
