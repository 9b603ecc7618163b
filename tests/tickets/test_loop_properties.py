"""Property test through the real services and database: random operation sequences by random actors.

Whatever happens, the ticket is in a known state consistent with its fields, every refusal left it untouched,
and its audit trail replays to its current state.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import (
    AGENT,
    CALLER,
    DISPATCHER,
    HANDLER,
    LEADER,
    MONDAY_10AM,
    OTHER_HANDLER,
    SYSTEM,
)
from tickets.errors import TicketError
from tickets.services import apply, create_ticket, get_ticket, replay_ticket, ticket_events
from tickets.states import TRANSITIONS, State, allowed_actions

ACTORS = [AGENT, CALLER, DISPATCHER, HANDLER, OTHER_HANDLER, LEADER, SYSTEM]
SHORTCUTS = {"withdraw", "close_instant"}  # end the loop at once: only drawn among "any action"
WITH_DEPARTMENT = {
    State.DISPATCHED,
    State.SIGNED,
    State.IN_PROGRESS,
    State.REPLIED,
    State.VERIFIED,
    State.CALLBACK,
}


def fields_for(action: str, ticket: Any) -> dict[str, Any]:
    due = ticket.due_at or MONDAY_10AM
    return {
        "dispatch": {"lead_department": "zjj"},
        "reply": {"reply": "已办理"},
        "close_instant": {"answer": "已答复"},
        "request_extension": {"until": due + timedelta(days=5)},
        "callback_close": {"satisfaction": "satisfied"},
    }.get(action, {})


def check_consistent(t: Any) -> None:
    state = State(t.state)
    assert (state in WITH_DEPARTMENT) <= (t.lead_department is not None)
    assert (t.closed_at is not None) == (state == State.CLOSED)
    assert t.extension_requested_until is None or state in {State.SIGNED, State.IN_PROGRESS}
    assert t.answer is None or state == State.CLOSED


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_random_operations_keep_ticket_consistent_and_replayable(db, draft, data) -> None:
    async with db() as s:
        t = await create_ticket(s, draft(), AGENT, now=MONDAY_10AM, settings=SETTINGS)
        for _ in range(data.draw(st.integers(min_value=0, max_value=24), label="steps")):
            actor, action = data.draw(st.sampled_from(ACTORS), label="actor"), None
            onward = [
                (a, act)
                for a in ACTORS
                for act in allowed_actions(
                    State(t.state),
                    a.role,
                    department=a.department,
                    lead_department=t.lead_department,
                )
                if act not in SHORTCUTS
            ]
            if onward and data.draw(st.integers(0, 3), label="move on") > 0:
                actor, action = data.draw(st.sampled_from(onward), label="legal step")
            action = action or data.draw(st.sampled_from(sorted(TRANSITIONS)), label="any action")
            before = (t.version, t.state, len(await ticket_events(s, t.ticket_no)))
            try:
                t = await apply(
                    s,
                    t.ticket_no,
                    action,
                    actor,
                    expected_version=t.version,
                    note="原因",
                    now=MONDAY_10AM,
                    settings=SETTINGS,
                    **fields_for(action, t),
                )
            except TicketError:
                t = await get_ticket(s, t.ticket_no)
                assert (t.version, t.state, len(await ticket_events(s, t.ticket_no))) == before
            check_consistent(t)
            events = await ticket_events(s, t.ticket_no)
            assert len(events) == t.version  # one event per committed change, creation included
            assert await replay_ticket(s, t.ticket_no) == t.state
        event(f"ended {t.state}")
