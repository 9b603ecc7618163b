"""Errors of smart dispatch (智能派单): a stable code, a Chinese message, and where the fault is."""

from __future__ import annotations

from config.errors import HotlineError


class DispatchError(HotlineError, ValueError):
    """Base; subclasses name their ``code``; ``message`` names the fault's place."""

    code = "dispatch.error"

    def __init__(self, message: str, *, line: int | None = None, key: str | None = None) -> None:
        super().__init__(type(self).code, message)
        self.line = line
        self.key = key


class CatalogueError(DispatchError):
    """The dispatch catalogue (派单目录) file is malformed."""

    code = "dispatch.catalogue_invalid"


class TrainingDataError(DispatchError):
    """A dispatch history file cannot be used for training or evaluation."""

    code = "dispatch.training_data_invalid"


class ModelFileError(DispatchError):
    """The stored dispatch model cannot be read."""

    code = "dispatch.model_unreadable"
