"""tickets.orm: the SQLAlchemy internals the ticket domain relies on behave like the public route they replace."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.orm import make_transient_to_detached

from tests.settings_support import SETTINGS
from tests.tickets.loop_support import AGENT, GARBAGE, GARBAGE_AGAIN, MONDAY_10AM
from tickets.models import TicketRepeat
from tickets.orm import as_loaded
from tickets.services import create_ticket

LINK = {"ticket_id": 2, "earlier_id": 1, "reason": "same_caller", "similarity": 1.0}


def state_of(obj: object) -> tuple[dict[str, object], dict[str, object], bool, bool]:
    """What the session will see of ``obj``: its values, its history, whether it is pending or changed."""
    state = inspect(obj)
    values = {k: v for k, v in state.dict.items() if not k.startswith("_")}
    return values, dict(state.committed_state), state.pending, state.modified


def test_an_object_as_loaded_is_the_constructed_one_after_make_transient_to_detached() -> None:
    ours = as_loaded(TicketRepeat, LINK)
    public = TicketRepeat(**LINK)
    assert (
        state_of(public)[1:] != state_of(ours)[1:]
    )  # the constructor leaves history; as_loaded none
    make_transient_to_detached(public)
    assert state_of(ours) == ({**LINK}, {}, False, False)
    make_transient_to_detached(ours)
    assert state_of(ours) == state_of(public)
    assert inspect(ours).identity == inspect(public).identity == (2, 1)
    assert all(not a.history.has_changes() for a in inspect(ours).attrs)


async def test_a_new_ticket_sits_in_the_session_as_loaded_and_flushes_nothing(
    session, draft
) -> None:
    """On PostgreSQL the ticket and its links are built with as_loaded after the server wrote them."""
    first = await create_ticket(
        session, draft(content=GARBAGE), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    again = await create_ticket(
        session, draft(content=GARBAGE_AGAIN), AGENT, now=MONDAY_10AM, settings=SETTINGS
    )
    state = inspect(again)
    assert state.persistent and not state.modified and again in session
    assert not session.new and not session.dirty
    assert [(link.ticket_id, link.earlier_id) for link in again.repeat_links] == [
        (again.id, first.id)
    ]
    assert not any(inspect(link).pending or inspect(link).modified for link in again.repeat_links)
    await session.commit()
    assert not session.new and not session.dirty
