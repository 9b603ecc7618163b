"""`hotline ivr` runs the AMI controller alone, with what hangs on it: call-backs (回访 and missed calls, rung by
one process on the database), voice messages filed as tickets, the console feed (screen pops and the live
queue, which reach the console workers through the PostgreSQL hub), and the console workers' transfers,
supervision, board, agent status (QueueAdd / QueuePause) and manual call-backs (their commands through the
PostgreSQL command channel).

``hotline ivr --instance b`` (or ``callcontrol.pbx = "b"`` naming a local instance) controls the named local
Asterisk ``b`` (``hotline pbx start --instance b``): its PBX is named ``b`` and, without an AMI login of its own,
it logs in with the login of ``pbx-b.json`` on the instance's AMI port and serves its blocklist FastAGI port."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from functools import partial

from config import HotlineError, Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ivr", help="AMI 控制器：溢出到语音机器人、领导接听日、通话记录 (AMI controller)"
    )
    p.add_argument(
        "--instance",
        default="",
        help="the named local PBX instance (pbx.instances) to control, e.g. b: its AMI login and ports",
    )
    p.set_defaults(handler=_run)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_serve(instance_settings(settings, args.instance)))


def instance_settings(settings: Settings, instance: str = "") -> Settings:
    """The settings of the controller of local PBX ``instance`` ("": the one ``callcontrol.pbx`` names, if any):
    ``callcontrol.pbx`` names it and, with an empty ``ami.username``, AMI and the blocklist FastAGI are on the
    instance's ports (:func:`ivr.controller.resolve_ami_credentials` reads its login)."""
    from ivr.controller import local_instance
    from ivr.pbx.render import Instance

    pbx = settings.callcontrol.pbx
    if instance and pbx not in ("", instance):
        raise HotlineError(
            "ivr.instance_mismatch", f"--instance {instance} 与 callcontrol.pbx = {pbx} 不一致"
        )
    named = settings.model_copy(
        update={"callcontrol": settings.callcontrol.model_copy(update={"pbx": instance or pbx})}
    )
    # an unknown --instance: pbx.unknown_instance
    local = Instance.of(named, instance or local_instance(named))
    if not local.name or settings.ami.username:
        return named
    shifted = local.shifted(named)
    ami = named.ami.model_copy(update={"port": shifted.pbx.ami_port})
    return named.model_copy(update={"ami": ami, "blocklist": shifted.blocklist})


async def _serve(settings: Settings) -> int:
    from agent_console.ticket_feed import TicketFeed
    from hotline.runtime import database, until_signalled
    from hotline.wiring import (
        Telephony,
        blocklist_agi,
        build_hub,
        callback_schedulers,
        command_executor,
        console_feed,
        controller_commands,
        message_filer,
        start_jobs,
        start_telephony,
        stop_telephony,
        subscribe,
        telephony_jobs,
    )
    from ivr.callcontrol import CallControl
    from ivr.controller import build_controller, resolve_ami_credentials

    resolve_ami_credentials(
        settings
    )  # fail now, with a clear message, when there is nothing to log in with
    async with database(settings) as sessionmaker:
        controller = build_controller(settings, sessionmaker)
        filer = message_filer(
            controller, sessionmaker, settings
        )  # voice messages (留言) become tickets
        hub = build_hub(settings, sessionmaker)
        # ticket state changes made here (call-back results 回访) on the consoles' ticket pages
        TicketFeed(hub).attach(sessionmaker)
        clock = partial(datetime.now, UTC)
        callcontrol = CallControl(controller, settings.callcontrol, sessionmaker, clock)
        telephony = Telephony(
            controller,
            callback_schedulers(settings, sessionmaker, controller),
            console_feed(settings, controller, hub, sessionmaker, clock),
            messages=filer,
            blocklist=blocklist_agi(settings, sessionmaker),
            callcontrol=callcontrol,
        )
        commands = controller_commands(telephony)
        executor = command_executor(settings, sessionmaker, commands) if commands else None
        subscribe(telephony)
        await start_telephony(telephony)
        await hub.start()
        if executor is not None:
            await executor.start()
        jobs = start_jobs(settings, telephony_jobs(telephony))
        try:
            await until_signalled()
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            if executor is not None:
                await executor.close()
            await stop_telephony(telephony)
            await hub.close()
    return 0
