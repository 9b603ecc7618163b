"""Sub-commands of `hotline`: every module here has ``register(subparsers)``; its parsers set
``handler(settings, args) -> int``."""

import importlib
import pkgutil
from types import ModuleType


def command_modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
