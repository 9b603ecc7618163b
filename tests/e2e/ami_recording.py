"""Recording what a controller's AMI connection receives from the real Asterisk, as replay fixtures.

:class:`AmiRecording` taps every byte (``AmiClient.tap``); :meth:`AmiRecording.fixture` keeps the banner and the
events the controller uses (those an AMI Filter of :data:`ivr.events.AMI_FILTERS` would pass), so a fixture in
``tests/ivr/fixtures`` holds one scenario without the PBX's unrelated chatter. With ``HOTLINE_RECORD_AMI=1`` the
e2e tests write their scenarios there (re-recording them); otherwise they only check what they recorded.
"""

from __future__ import annotations

import os
import re

from ivr import events as ev
from ivr.ami import AmiClient
from tests.ivr.amitools import FIXTURES

_FRAME_END = b"\r\n\r\n"
_EVENT = re.compile(rb"^Event: (\S+)\r?$", re.M)
_WANTED = frozenset(name.encode() for name in ev.SUBSCRIBED)


class AmiRecording:
    """Every byte a client receives from now on (attach before ``start()`` to have the banner)."""

    def __init__(self, client: AmiClient) -> None:
        self.received = bytearray()
        client.tap = self.received.extend

    def fixture(self) -> str:
        """The banner and the used events, LF line ends (the fixtures' form; the replayer restores CRLF)."""
        head, _, rest = bytes(self.received).partition(b"\r\n")
        kept = [head + b"\r\n"] + [
            frame + _FRAME_END for frame in rest.split(_FRAME_END) if _used(frame)
        ]
        return b"".join(kept).decode("utf-8").replace("\r\n", "\n")

    def save_if_asked(self, name: str) -> None:
        """Write ``tests/ivr/fixtures/<name>`` when ``HOTLINE_RECORD_AMI=1``."""
        if os.environ.get("HOTLINE_RECORD_AMI") == "1":
            (FIXTURES / name).write_text(self.fixture(), encoding="utf-8")


def _used(frame: bytes) -> bool:
    name = _EVENT.search(frame)
    return name is not None and name.group(1) in _WANTED
