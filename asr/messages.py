"""Voice messages (留言), the recogniser's side: the text of every message waiting for it goes into its ticket.

:class:`MessageTranscriber` runs in the bot's process on the bot's engine (the same model and decode threads,
one message at a time): it looks for messages still ``pending`` (:func:`tickets.voice_messages.pending_messages`)
every ``message.transcribe_s``, streams each recording through a recogniser session as a call would be (8 kHz
telephone audio stays 8 kHz), and records the text with :func:`tickets.voice_messages.record_transcript`.
A recording that is unreadable, shorter than ``message.min_speech_s``, silent, or heard as nothing but noise
or one of Whisper's phrases for non-speech is recorded as no speech (无语音): the ticket stays.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from asr.evaluate import normalize, read_wav, transcribe_pcm
from asr.recognizer import AsrError, RecognizerFactory
from config import Settings
from tickets.voice_messages import PendingMessage, pending_messages, record_transcript

log = logging.getLogger(__name__)

MIN_CHARACTERS = 2  # fewer recognised characters than this is not a message
# What Whisper writes for music, noise or silence (subtitle credits of its training data), normalised.
NON_SPEECH = frozenset(
    normalize(t)
    for t in (
        "谢谢观看",
        "谢谢大家",
        "请不吝点赞订阅转发打赏支持明镜与点点栏目",
        "字幕由Amara.org社区提供",
        "优优独播剧场YoYo Television Series Exclusive",
    )
)


def spoken_text(text: str) -> str | None:
    """The recognised text when it is a message; None for noise, credits or a stray syllable."""
    words = normalize(text)
    if len(words) < MIN_CHARACTERS or words in NON_SPEECH:
        return None
    return text.strip()


class MessageTranscriber:
    """Transcribes pending voice messages from ``folder`` into their tickets; :meth:`run` until cancelled."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        folder: Path,
        recognizers: RecognizerFactory,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cfg = settings.message
        self.sessionmaker = sessionmaker
        self.folder = folder
        self.recognizers = recognizers
        self.clock = clock
        self.transcribed = 0  # messages given their text (or no speech) by this process

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # the database may be away: next round
                log.exception("voice-message transcription failed")
            await asyncio.sleep(self.cfg.transcribe_s)

    async def run_once(self) -> int:
        """Transcribe the messages pending now; returns how many were done."""
        if not self.folder.is_dir():  # not mounted here: nothing is marked unreadable for that
            log.warning(
                "voice-message folder %s not found: messages wait untranscribed", self.folder
            )
            return 0
        async with self.sessionmaker() as session:
            pending = await pending_messages(session)
        for message in pending:
            await self._transcribe(message)
        return len(pending)

    async def _transcribe(self, message: PendingMessage) -> None:
        text = await self.transcribe(self.folder / message.file)
        async with self.sessionmaker() as session:
            state = await record_transcript(session, message.call_id, text, now=self.clock())
        self.transcribed += 1
        log.info("voice message %s (ticket %s): %s", message.call_id, message.ticket_no, state)

    async def transcribe(self, path: Path) -> str | None:
        """The message's text, or None when it holds no speech (or cannot be read)."""
        try:
            pcm, rate = await asyncio.to_thread(read_wav, path)
        except AsrError as exc:
            log.warning("voice message %s unreadable: %s", path.name, exc.code)
            return None
        if len(pcm) / (2 * rate) < self.cfg.min_speech_s:
            return None
        return spoken_text(await transcribe_pcm(self.recognizers, pcm, rate))
