"""The base of every error the hotline reports to people and programs."""


class HotlineError(Exception):
    """A stable machine-readable ``code`` (e.g. ``ticket.illegal_transition``) and a Chinese ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
