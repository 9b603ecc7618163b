"""The systemd units of deploy/systemd: each starts a `hotline` sub-command the CLI has, and each controller
(hotline-ivr@<name>) serves the PBX its instance names, with a call-log spool of its own."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from config.settings import load_settings
from hotline.cli import build_parser

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def directives(unit: Path, instance: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit (a key may repeat), with its instance name ``%i`` filled in."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        if line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip().replace("%i", instance))
    return found


@pytest.mark.parametrize("unit", sorted(UNITS.glob("*.service")), ids=lambda p: p.name)
def test_every_unit_starts_a_hotline_sub_command_that_exists(unit: Path) -> None:
    [exec_start] = directives(unit, "8081")["ExecStart"]
    program, *argv = shlex.split(exec_start)
    assert Path(program).name == "hotline"
    args = build_parser().parse_args(argv)  # an unknown command or option exits here
    assert callable(args.handler)


def test_each_ivr_instance_serves_the_pbx_it_names_with_a_spool_of_its_own() -> None:
    def settings_of(instance: str) -> tuple[str, str]:
        env = dict(
            line.split("=", 1)
            for line in directives(UNITS / "hotline-ivr@.service", instance)["Environment"]
        )
        settings = load_settings(env=env)
        return settings.callcontrol.pbx, settings.calllog.spool_path

    (pbx1, spool1), (pbx2, spool2) = settings_of("pbx1"), settings_of("pbx2")
    assert (pbx1, pbx2) == ("pbx1", "pbx2")
    assert spool1 != spool2 and Path(spool1).is_absolute()
