"""Sub-commands of `hotline`: every module here has ``register(subparsers)``; its parsers set
``handler(settings, args) -> int``. Registration stays cheap (`hotline --help` starts in well under a second):
a module imports the heavy packages (speech, machine learning, the web app) inside the handlers that use them."""

import importlib
import pkgutil
import sys
from types import ModuleType


def command_modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]


def loading(what: str) -> None:
    """Tell the user on stderr what a command is loading before a wait of a second or more."""
    print(f"正在加载{what}…", file=sys.stderr, flush=True)
