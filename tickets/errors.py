"""Errors of the ticket domain: a stable machine-readable ``code`` and a Chinese ``message`` for the UI."""

from __future__ import annotations

from config.errors import HotlineError


class TicketError(HotlineError):
    """Base of every ticket error; subclasses name their default ``code``."""

    code = "ticket.error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(code or type(self).code, message)
        self.field = field  # the offending input field, when one is to blame


class InvalidInput(TicketError):
    """Bad input: too long, malformed phone, unknown category or department … nothing was written."""

    code = "ticket.invalid_input"


class NotFound(TicketError):
    """No ticket (or department) with that key."""

    code = "ticket.not_found"


class IllegalTransition(TicketError):
    """The action is not allowed in the ticket's current state."""

    code = "ticket.illegal_transition"


class Forbidden(TicketError):
    """The actor's role (or department) may not perform the action."""

    code = "ticket.forbidden"


class VersionConflict(TicketError):
    """Someone else changed the ticket since the caller read it (optimistic lock)."""

    code = "ticket.version_conflict"
