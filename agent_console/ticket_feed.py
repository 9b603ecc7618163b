"""Ticket state changes on the live hub (工单状态实时更新): the ticket list and the ticket page of every console
worker show a change as soon as it is committed, whoever made it (a console user, the call-back bot, a merge).

The domain knows nothing of it: every state change writes an audit event (``tickets.models.TicketEvent``) in
its transaction, and :class:`TicketFeed` watches the sessions of a sessionmaker for them. It notes each new
event with a change of state at the flush and publishes it once the transaction commits (never one rolled
back). A new ticket is no change of state and is not published.

Who hears a change: topics ``tickets:<scope>`` follow the console's data scope (:class:`DataScope`):
``tickets:all`` for the roles that see every ticket, ``tickets:dept:<code>`` for the handlers of its lead and
co-handling departments, ``tickets:grid:<grid>`` for the grid workers of its grid. A user may subscribe only
to the topic of their own scope (:data:`TICKETS_RULE`), so nobody hears of a ticket they may not open.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from sqlalchemy import event, inspect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from agent_console import keys
from agent_console.hub import Hub, TopicRule
from agent_console.roles import ALL_ROLES, DataScope, ScopedUser
from tickets.models import Ticket, TicketEvent
from tickets.states import STATE_LABELS, State

log = logging.getLogger(__name__)

TICKETS = "tickets"
CHANGES = "ticket_changes"  # Session.info key: the changes flushed in the open transaction
Change = tuple[list[str], dict[str, Any]]  # (topics, payload)


def scope_argument(user: ScopedUser) -> str | None:
    """The ``tickets:`` topic argument of ``user``'s data scope; None when they see no ticket."""
    scope = DataScope.for_user(user)
    if scope.nothing:
        return None
    if scope.department is not None:
        return f"dept:{scope.department}"
    if scope.grid is not None:
        return f"grid:{scope.grid}"
    return "all"


def ticket_topic(user: ScopedUser) -> str:
    """The topic of the ticket changes ``user`` may hear ("" when none)."""
    argument = scope_argument(user)
    return f"{TICKETS}:{argument}" if argument else ""


def _own_scope(user: Any, argument: str | None) -> bool:
    return argument is not None and argument == scope_argument(user)


TICKETS_RULE = TopicRule(TICKETS, ALL_ROLES, _own_scope)


def topics_of(ticket: Ticket) -> list[str]:
    """Every scope that sees ``ticket`` (as ``agent_console.desk.view_models.may_see`` decides)."""
    state = inspect(ticket)
    co = [] if "co_departments" in state.unloaded else ticket.co_department_codes
    departments = dict.fromkeys(d for d in (ticket.lead_department, *co) if d)
    topics = [f"{TICKETS}:all", *(f"{TICKETS}:dept:{d}" for d in departments)]
    return topics + ([f"{TICKETS}:grid:{ticket.grid}"] if ticket.grid else [])


def change_payload(ticket_no: str, audit: TicketEvent) -> dict[str, Any]:
    return {
        "kind": "ticket",
        "ticket_no": ticket_no,
        "state": audit.to_state,
        "state_label": STATE_LABELS[State(audit.to_state)],
        "from_state": audit.from_state,
        "action": audit.action,
        "by": audit.actor,
        "at": audit.at.isoformat(),
    }


class TicketFeed:
    """Publishes on ``hub`` the committed ticket state changes of the sessions of the sessionmakers it is
    attached to."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def attach(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """Watch every session ``sessionmaker`` makes from now on (through a session class of its own)."""
        base = sessionmaker.kw.get("sync_session_class") or Session
        watched = type(f"{base.__name__}WithTicketFeed", (base,), {})
        event.listen(watched, "after_flush", self._note)
        event.listen(watched, "after_commit", self._publish)
        event.listen(watched, "after_rollback", self._forget)
        sessionmaker.configure(sync_session_class=watched)

    @staticmethod
    def _note(session: Session, _context: Any) -> None:
        for audit in session.new:
            if not isinstance(audit, TicketEvent) or audit.from_state in (None, audit.to_state):
                continue
            key = Session.identity_key(Ticket, audit.ticket_id)
            ticket = session.identity_map.get(key)
            if ticket is None:  # every service changes a ticket it loaded: not expected
                log.warning("ticket %s changed outside its session: not published", audit.ticket_id)
                continue
            change = (topics_of(ticket), change_payload(ticket.ticket_no, audit))
            session.info.setdefault(CHANGES, []).append(change)

    def _publish(self, session: Session) -> None:
        for topics, payload in session.info.pop(CHANGES, []):
            for topic in topics:
                self.hub.publish(topic, payload)

    @staticmethod
    def _forget(session: Session) -> None:
        session.info.pop(CHANGES, None)


def setup_ticket_feed(app: web.Application) -> None:
    """The console's ticket changes on its hub; users may subscribe to their scope's topic."""
    app[keys.HUB].rules.setdefault(TICKETS_RULE.name, TICKETS_RULE)
    TicketFeed(app[keys.HUB]).attach(app[keys.SESSIONMAKER])
