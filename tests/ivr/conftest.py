"""Fixtures of the controller's unit tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ivr.ami import AmiClient
from ivr.state import HotlineState
from tests.ivr.amitools import Replayer, attach, fixture_bytes, new_client


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
