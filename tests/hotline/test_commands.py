"""Every `hotline` command lives in its own module, named like the command."""

from __future__ import annotations

import argparse

from hotline.commands import command_modules


def test_each_command_module_registers_exactly_its_own_command() -> None:
    for module in command_modules():
        sub = argparse.ArgumentParser().add_subparsers()
        module.register(sub)
        assert list(sub.choices) == [module.__name__.rsplit(".", 1)[-1]], module.__name__
