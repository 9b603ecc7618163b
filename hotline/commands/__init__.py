"""Sub-commands of `hotline`. Each module has ``register(subparsers)`` and sets ``handler(settings, args)``."""

from hotline.commands import db

COMMAND_MODULES = [db]
