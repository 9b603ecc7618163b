"""并单 (merging duplicates) and 保密 (confidential callers) through the services, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import (
    AGENT,
    DISPATCHER,
    HANDLER,
    LEADER,
    MONDAY_10AM,
    SYSTEM,
    count,
    step,
)
from tickets.errors import Forbidden, IllegalTransition, InvalidInput
from tickets.models import OutboxMessage, Ticket, TicketEvent
from tickets.services import (
    Actor,
    create_ticket,
    due_for_callback,
    get_ticket,
    merge_candidates,
    merge_links,
    merge_tickets,
    record_callback,
    replay_ticket,
    set_confidential,
    ticket_events,
)
from tickets.warnings import scan_warnings, warnings_of

PHONES = ("13812345678", "13900001111", "13700002222")


async def filed(session, draft, phone: str = PHONES[0], **over) -> Ticket:
    return await create_ticket(
        session, draft(caller_phone=phone, **over), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )


async def merge(session, main: Ticket, *dups: Ticket, actor=DISPATCHER) -> Ticket:
    return await merge_tickets(
        session,
        main.ticket_no,
        [d.ticket_no for d in dups],
        actor,
        expected_version=main.version,
        note="同一事项",
        now=MONDAY_10AM,
        settings=SETTINGS,
    )


async def replied(session, ticket: Ticket) -> Ticket:
    t = await step(session, ticket, "review", DISPATCHER)
    t = await step(session, t, "dispatch", DISPATCHER, lead_department="zjj")
    t = await step(session, t, "sign", HANDLER)
    return await step(session, t, "reply", HANDLER, reply="垃圾已清运，已安排每日保洁")


async def test_merged_tickets_wait_then_every_caller_gets_the_result_and_a_callback_once(
    session, draft
) -> None:
    main, a, b = [await filed(session, draft, p) for p in PHONES]
    main = await merge(session, main, a, b)
    links = await merge_links(session, main)
    assert [x.ticket_no for x in links.merged] == [a.ticket_no, b.ticket_no]
    for dup in (a, b):
        dup = await get_ticket(session, dup.ticket_no)
        assert (dup.state, dup.merged_into_id) == ("merged", main.id)
        assert (await merge_links(session, dup)).main.ticket_no == main.ticket_no
        assert [e.action for e in await ticket_events(session, dup)] == ["create", "merge"]
    main_events = await ticket_events(session, main)
    assert main_events[-1].action == "merge_in"
    assert main_events[-1].payload == {"merged": [a.ticket_no, b.ticket_no]}
    assert main.state == "accepted"  # the main ticket goes on along the loop

    main = await step(session, await replied(session, main), "verify", DISPATCHER)
    evening = MONDAY_10AM.replace(hour=11)
    due = {t.ticket_no for t in await due_for_callback(session, evening, settings=SETTINGS)}
    assert due == {main.ticket_no, a.ticket_no, b.ticket_no}  # every caller is called back
    notices = (await session.execute(select(OutboxMessage))).scalars().all()
    assert sorted(n.recipient for n in notices) == sorted(PHONES[1:])
    assert all("垃圾已清运" in n.body and main.ticket_no in n.body for n in notices)
    for dup in (a, b):
        dup = await get_ticket(session, dup.ticket_no)
        assert (dup.state, dup.reply) == ("verified", "垃圾已清运，已安排每日保洁")
        assert [e.action for e in await ticket_events(session, dup)][-1] == "merge_settle"
        assert await replay_ticket(session, dup.ticket_no) == "verified"

    # the main ticket's 回访 leaves the merged ones alone; a 二次派单 and a second 核验 notify nobody again
    main = await record_callback(session, main.ticket_no, "unsatisfied", SYSTEM, settings=SETTINGS)
    main = await step(session, main, "sign", HANDLER)
    main = await step(session, main, "reply", HANDLER, reply="再次清运")
    await step(session, main, "verify", DISPATCHER)
    assert await count(session, OutboxMessage) == 2
    closed = await record_callback(session, a.ticket_no, "satisfied", SYSTEM, settings=SETTINGS)
    assert (closed.state, closed.satisfaction) == ("closed", "satisfied")


async def test_merging_into_a_ticket_already_in_callback_settles_at_once(session, draft) -> None:
    main = await step(
        session, await replied(session, await filed(session, draft)), "verify", DISPATCHER
    )
    dup = await filed(session, draft, PHONES[1])
    await merge(session, main, dup)
    assert (await get_ticket(session, dup.ticket_no)).state == "verified"
    assert await count(session, OutboxMessage) == 1


async def test_instant_answer_of_a_main_ticket_settles_its_merged_ones(session, draft) -> None:
    main, dup = await filed(session, draft), await filed(session, draft, PHONES[1])
    main = await merge(session, main, dup)
    await step(session, main, "close_instant", AGENT, answer="已告知办理流程")
    assert (await get_ticket(session, dup.ticket_no)).reply == "已告知办理流程"


async def refused_merge(
    session, main: Ticket, dups: list[Ticket], code: str, actor=DISPATCHER
) -> None:
    """The merge is refused with ``code`` and writes nothing."""
    events, tickets = await count(session, TicketEvent), await count(session, Ticket)
    states = {t.ticket_no: t.state for t in (await session.execute(select(Ticket))).scalars()}
    with pytest.raises((IllegalTransition, InvalidInput, Forbidden)) as err:
        await merge(session, await get_ticket(session, main.ticket_no), *dups, actor=actor)
    assert err.value.code == code and err.value.message
    assert (await count(session, TicketEvent), await count(session, Ticket)) == (events, tickets)
    after = {t.ticket_no: t.state for t in (await session.execute(select(Ticket))).scalars()}
    assert after == states


async def test_illegal_merges_are_refused_with_a_code_and_write_nothing(session, draft) -> None:
    main, a, b, c = [await filed(session, draft, p) for p in (*PHONES, "13600003333")]
    gone = await step(session, await filed(session, draft, "13500004444"), "withdraw", AGENT)
    await refused_merge(session, main, [main], "ticket.merge_self")
    await refused_merge(session, main, [gone], "ticket.merge_closed")
    await refused_merge(session, gone, [a], "ticket.merge_closed")
    await refused_merge(session, main, [a, a], "ticket.merge_duplicate")
    await refused_merge(session, main, [], "ticket.merge_count")
    await refused_merge(session, main, [a], "ticket.role_forbidden", actor=HANDLER)
    await refused_merge(session, main, [a], "ticket.role_forbidden", actor=LEADER)
    await refused_merge(session, main, [a, gone], "ticket.merge_closed")  # one bad: none merged
    main = await merge(session, main, a)
    await refused_merge(session, main, [a], "ticket.merge_already_merged")
    await refused_merge(session, b, [a], "ticket.merge_already_merged")
    await refused_merge(session, a, [main], "ticket.merge_cycle")
    await refused_merge(session, a, [b], "ticket.merge_main_merged")
    await refused_merge(session, c, [main], "ticket.merge_is_main")
    with pytest.raises(
        IllegalTransition
    ) as err:  # the main ticket cannot leave its merged ones behind
        await step(session, await get_ticket(session, main.ticket_no), "withdraw", AGENT)
    assert err.value.code == "ticket.merge_main_withdraw"


async def test_a_merged_ticket_takes_no_loop_action_nor_warning_nor_callback(
    session, draft
) -> None:
    main, dup = await filed(session, draft), await filed(session, draft, PHONES[1])
    await merge(session, main, dup)
    dup = await get_ticket(session, dup.ticket_no)
    for action, actor in (("review", DISPATCHER), ("withdraw", AGENT)):
        with pytest.raises(IllegalTransition):
            await step(session, dup, action, actor)
    for action in (
        "merge",
        "merge_settle",
    ):  # only through merge_tickets and the main ticket's result
        with pytest.raises(IllegalTransition) as err:
            await step(session, dup, action, SYSTEM)
        assert err.value.code == "ticket.merge_action"
    await scan_warnings(session, now=MONDAY_10AM + timedelta(days=30), settings=SETTINGS)
    assert await warnings_of(session, main) and not await warnings_of(session, dup)
    later = MONDAY_10AM.replace(hour=11)
    assert dup.ticket_no not in {
        t.ticket_no for t in await due_for_callback(session, later, settings=SETTINGS)
    }


async def test_candidates_are_the_open_repeat_links_either_way(session, draft) -> None:
    first = await filed(session, draft)
    again = await filed(session, draft, PHONES[1])  # similar content, same district: a repeat
    other = await filed(session, draft, PHONES[2], content="附近工地夜间施工噪音太大，严重影响休息")
    assert [t.ticket_no for t in await merge_candidates(session, first)] == [again.ticket_no]
    assert [t.ticket_no for t in await merge_candidates(session, again)] == [first.ticket_no]
    assert await merge_candidates(session, other) == []
    await merge(session, first, again)
    assert await merge_candidates(session, first) == []


async def test_confidential_at_intake_or_later_is_audited_and_lifted_by_an_admin_only(
    session, draft
) -> None:
    t = await filed(session, draft, confidential=True)
    assert t.confidential
    assert (await ticket_events(session, t))[0].payload["confidential"] is True
    t = await filed(session, draft, PHONES[1])
    assert not t.confidential
    kw = {"now": MONDAY_10AM, "settings": SETTINGS}
    t = await set_confidential(session, t.ticket_no, True, AGENT, expected_version=t.version, **kw)
    assert t.confidential
    event = (await ticket_events(session, t))[-1]
    assert (event.action, event.payload, event.actor) == (
        "confidential",
        {"confidential": True},
        AGENT.name,
    )
    for actor in (AGENT, DISPATCHER):
        with pytest.raises(Forbidden):
            await set_confidential(
                session, t.ticket_no, False, actor, expected_version=t.version, **kw
            )
    with pytest.raises(Forbidden):
        await set_confidential(
            session, t.ticket_no, True, HANDLER, expected_version=t.version, **kw
        )
    admin = Actor("管理员", "admin")
    t = await set_confidential(session, t.ticket_no, False, admin, expected_version=t.version, **kw)
    assert not t.confidential and await replay_ticket(session, t.ticket_no) == "accepted"
