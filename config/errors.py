"""The base of every error the hotline reports to people and programs."""


class HotlineError(Exception):
    """A stable machine-readable ``code`` (e.g. ``ticket.illegal_transition``) and a Chinese ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class CodedError(HotlineError):
    """A :class:`HotlineError` whose subclasses name their ``code``; raised with the Chinese message alone."""

    code = "hotline.error"

    def __init__(self, message: str) -> None:
        super().__init__(type(self).code, message)
