"""The `hotline` command: one sub-command group per capability, each registered by its module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from config import HotlineError, SettingsError, load_settings
from config.pii import MaskPhones
from hotline.commands import command_modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotline", description="12345 热线：话务、语音机器人、知识库与接诉即办工单"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in command_modules():
        module.register(sub)
    return parser


def configure_logging(*, verbose: bool = False) -> None:
    """Log to stderr, with every phone number in a record masked whatever code logged it (PIPL)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(MaskPhones())
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[handler],
    )
    # Alembic's INFO lines (the schema check every command makes) are not a command's output; -v shows them.
    logging.getLogger("alembic").setLevel(logging.NOTSET if verbose else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"配置错误 (configuration error): {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.handler(settings, args) or 0)
    except HotlineError as exc:
        print(f"错误 [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
