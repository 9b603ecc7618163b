"""Fixtures of the tests in tests/tickets/ (shared folder: add your own fixtures below, keep these)."""

from loop_support import db, draft, session  # noqa: F401 - ticket-core fixtures: departments, drafts, a session
