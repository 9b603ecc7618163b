"""Stand-ins for the bot's dialogue without a call: the caller's line, the recogniser, the speech synthesiser and
the desk (knowledge base and ticket services). The dialogue runs on them in milliseconds. And AudioSocket
server settings on a free port (:func:`any_port`)."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from asr.audio import FRAME_BYTES
from asr.audiosocket_server import Audio, Dtmf
from asr.dialogue import Dialogue, DialogueConfig, Intake
from asr.prompts import load_prompts
from asr.recognizer import Final
from config import Settings
from config.settings import AudioSocketSettings
from knowledge.retrieval import NO_ANSWER, Answer


def any_port(**options: Any) -> AudioSocketSettings:
    """``asr.audiosocket`` with ``options`` (validated), listening on a free port."""
    return AudioSocketSettings(**options).model_copy(update={"port": 0})


class FakeLine:
    """The caller's side of a call as the AudioSocket server gives it: one frame per sentence, then the keys in
    ``keys`` once the bot asks for a number (:meth:`asked_for_number`), then the caller hangs up or stays on.
    With ``connected`` False nobody hears the bot (nothing is synthesised)."""

    def __init__(
        self, sentences: int, *, hang_up: bool, keys: str = "", connected: bool = False
    ) -> None:
        self.call_id = uuid.uuid4()
        self.sentences = sentences
        self.hang_up = hang_up
        self.keys = keys
        self.connected = connected
        self.asked = asyncio.Event()

    def asked_for_number(self, _call_id: str, mark: str, _when: float) -> None:
        """A dialogue ``trace``: the keys are pressed when the bot asks for the number."""
        if mark == "ask_phone":
            self.asked.set()

    async def events(self) -> AsyncIterator[Audio | Dtmf]:
        for _ in range(self.sentences):
            yield Audio(b"\0" * FRAME_BYTES)
        if self.keys:
            await self.asked.wait()
            for digit in self.keys:
                yield Dtmf(digit)
        if not self.hang_up:
            await asyncio.Event().wait()

    async def play(self, _pcm: bytes, *, on_first_frame: Callable[[], None] | None = None) -> bool:
        """Played at once (the first frame goes out now)."""
        if on_first_frame is not None:
            on_first_frame()
        return True

    def stop_playback(self) -> None:
        pass


class FakeRecogniser:
    """A recogniser that hears the next scripted sentence in each frame, or fails on the first one (``broken``)."""

    sample_rate = 8000

    def __init__(self, *sentences: str, broken: bool = False) -> None:
        self.sentences = deque(sentences)
        self.broken = broken

    async def feed(self, _pcm: bytes) -> list[Final]:
        if self.broken:
            raise RuntimeError("decoder crashed")
        return [Final(self.sentences.popleft(), 0.0, 1.0)] if self.sentences else []

    async def flush(self) -> list[Final]:
        return []


class FakeTts:
    """Speech synthesis that takes no time and produces no sound."""

    async def asynthesize(self, _text: str) -> bytes:
        return b""

    async def asynthesize_piece(self, text: str) -> bytes:
        return await self.asynthesize(text)


class FakeDesk:
    """A knowledge base that knows nothing, and ticket services that file tickets or are down."""

    def __init__(self, *, tickets_down: bool = False) -> None:
        self.tickets_down = tickets_down
        self.misses: list[str] = []
        self.miss_log: list[tuple[str, int | None, str]] = []  # (text, best entry, reason)
        self.tickets: list[Intake] = []

    async def ask(self, text: str, context: Answer | None = None) -> Answer:
        return NO_ANSWER

    async def send_answer(self, phone: str, answer: Answer) -> None:
        raise AssertionError("no SMS sender")

    async def record_miss(self, text: str, answer: Answer, reason: str) -> None:
        self.misses.append(text)
        self.miss_log.append((text, answer.answer_id, reason))

    async def close_instant(self, intake: Intake, answer: Answer) -> str:
        raise AssertionError("nothing was answered")

    async def create_ticket(self, intake: Intake) -> str:
        if self.tickets_down:
            raise ConnectionError("ticket services unavailable")
        self.tickets.append(intake)
        return f"12345-20250303-{len(self.tickets):05d}"


class ScriptedLine(FakeLine):
    """A caller who follows a script: each step says a sentence (one frame; give the recogniser the same
    sentences) or presses a key (:class:`Dtmf`), once the bot has reached the step's mark (its ``trace``
    marks: ``answer``, ``clarify``, ``ask_phone`` …; the n-th step waiting for a mark waits for its n-th time;
    None: at once). Then the caller stays on."""

    def __init__(self, *steps: tuple[str | None, str | Dtmf]) -> None:
        super().__init__(0, hang_up=False, connected=True)
        self.steps = steps
        self.marks: list[str] = []
        self._marked = asyncio.Event()

    def asked_for_number(self, call_id: str, mark: str, when: float) -> None:
        self.marks.append(mark)
        self._marked.set()

    async def events(self) -> AsyncIterator[Audio | Dtmf]:
        waited: dict[str, int] = {}
        for mark, item in self.steps:
            if mark is not None:
                waited[mark] = waited.get(mark, 0) + 1
                while self.marks.count(mark) < waited[mark]:
                    self._marked.clear()
                    await self._marked.wait()
            yield item if isinstance(item, Dtmf) else Audio(b"\0" * FRAME_BYTES)
        await asyncio.Event().wait()

    def said(self) -> list[str]:
        """What the caller says, in order (for :class:`FakeRecogniser`)."""
        return [item for _, item in self.steps if isinstance(item, str)]


def fake_dialogue(
    settings: Settings,
    line: FakeLine,
    recogniser: FakeRecogniser,
    *,
    desk: FakeDesk,
    caller_id: str | None,
    cfg: DialogueConfig,
) -> Dialogue:
    """A dialogue on the fakes; the AMI controller knows ``caller_id`` as the caller's number."""

    async def caller_for(_call_id: str) -> str | None:
        return caller_id

    return Dialogue(
        line,
        recogniser,
        tts=FakeTts(),
        desk=desk,
        prompts=load_prompts(settings),  # type: ignore[arg-type]
        cfg=cfg,
        caller_for=caller_for,
        trace=line.asked_for_number,
    )
