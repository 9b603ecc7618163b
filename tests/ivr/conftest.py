"""Fixtures of the controller's unit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from config import Settings
from ivr.ami import AmiClient
from ivr.state import HotlineState
from tests.ivr.amitools import Replayer, attach, fixture_bytes, new_client


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The shipped settings with a call-log spool of this test's own."""
    spool = settings.calllog.model_copy(
        update={"spool_path": str(tmp_path / "calllog-spool.jsonl")}
    )
    return settings.model_copy(update={"calllog": spool})


@pytest.fixture
def client() -> AmiClient:
    return new_client()


@pytest.fixture
def replay(client: AmiClient) -> Callable[[str, HotlineState], Replayer]:
    """Replay a recorded stream from tests/ivr/fixtures into a state through the client's protocol."""

    def run(name: str, state: HotlineState) -> Replayer:
        replayer = Replayer(client, state)
        protocol, _ = attach(client)
        protocol.data_received(fixture_bytes(name))
        return replayer

    return run
