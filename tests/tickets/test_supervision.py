"""Supervision (督办): the letter to the responsible leader, recorded on the ticket without changing its state."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from config import load_settings
from tests.settings_support import SETTINGS
from tests.tickets.loop_support import AGENT, CALLER, DISPATCHER, HANDLER, LEADER, MONDAY_10AM, step
from tickets.errors import Forbidden, IllegalTransition, TicketError
from tickets.models import OutboxMessage
from tickets.services import create_ticket, get_ticket, replay_ticket, ticket_events
from tickets.supervision import load_template, supervise, supervisions_of

LATE = MONDAY_10AM + timedelta(days=8)  # a day past the 5-working-day deadline


async def test_leader_supervises_by_hand_with_a_letter_to_the_departments_leader(
    session, draft, catalogue
) -> None:
    t = await create_ticket(
        session,
        draft(content="幸福小区物业不作为，楼道垃圾堆积", category="住房安居/物业服务"),
        AGENT,
        now=MONDAY_10AM,
        settings=SETTINGS,
    )
    t = await step(session, t, "review", DISPATCHER)
    t = await step(session, t, "dispatch", DISPATCHER, lead_department="zjj")
    version = t.version

    row = await supervise(
        session,
        t.ticket_no,
        LEADER,
        note="请本周内办结",
        now=LATE,
        catalogue=catalogue,
        settings=SETTINGS,
    )
    assert (row.actor, row.role, row.reason, row.department) == (
        "赵主任",
        "leader",
        "manual",
        "zjj",
    )
    assert (
        row.leader == "区住房和城乡建设局 张建设（副局长）"
    )  # the catalogue entry of the ticket's category
    for expected in (
        t.ticket_no,
        "区住房和城乡建设局 张建设（副局长）",
        "幸福小区物业不作为",
        "2025年03月10日 10:00",
        "已超期 1 天 0 小时",
        "领导督办（请本周内办结）",
        "2025年03月11日",
    ):
        assert expected in row.letter, expected
    letter = (await session.execute(select(OutboxMessage))).scalar_one()
    assert (letter.channel, letter.recipient, letter.body) == ("email", row.leader, row.letter)
    assert letter.subject == f"督办函：工单 {t.ticket_no}"

    stored = await get_ticket(session, t.ticket_no)
    assert (stored.state, stored.version) == ("dispatched", version)
    event = (await ticket_events(session, t.ticket_no))[-1]
    assert (event.action, event.actor, event.from_state, event.to_state, event.note) == (
        "supervise",
        "赵主任",
        "dispatched",
        "dispatched",
        "请本周内办结",
    )
    assert await replay_ticket(session, t.ticket_no) == "dispatched"
    assert [s.id for s in await supervisions_of(session, t.ticket_no)] == [row.id]


async def test_only_supervisors_may_supervise_and_only_open_tickets(
    session, draft, catalogue
) -> None:
    t = await create_ticket(session, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
    with pytest.raises(Forbidden) as err:
        await supervise(
            session, t.ticket_no, HANDLER, now=LATE, catalogue=catalogue, settings=SETTINGS
        )
    assert err.value.code == "ticket.role_forbidden"
    await step(session, t, "withdraw", CALLER)
    with pytest.raises(IllegalTransition) as err:
        await supervise(
            session, t.ticket_no, LEADER, now=LATE, catalogue=catalogue, settings=SETTINGS
        )
    assert err.value.code == "ticket.supervise_closed"
    assert (await session.execute(select(OutboxMessage))).first() is None


def test_a_template_with_an_unknown_placeholder_is_refused(tmp_path) -> None:
    bad = tmp_path / "letter.txt"
    bad.write_text("$ticket_no $unknown_field", encoding="utf-8")
    settings = load_settings(env={"HOTLINE_WARNINGS_LETTER_TEMPLATE": str(bad)})
    with pytest.raises(TicketError) as err:
        load_template(settings)
    assert err.value.code == "supervision.template_invalid" and "unknown_field" in err.value.message
