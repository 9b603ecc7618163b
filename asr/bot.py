"""The speech bot service (语音机器人): AudioSocket server + recogniser + TTS + knowledge base + ticket services.

Everything it needs is passed in (:func:`build_bot` assembles the defaults from the settings)::

    bot = await build_bot(settings, sessionmaker, on_outcome=report, caller_for=lookup_caller)
    await bot.start()            # pre-synthesises the fixed prompts, listens on asr.audiosocket host:port
    ...
    await bot.close()

``on_outcome(call_uuid, BotOutcome)`` is awaited before the bot sends the hangup frame, so the AMI controller
can set ``BOT_NEXT=hangup`` first (for ``queue`` it leaves BOT_NEXT unset and the dialplan requeues).
``on_ticket(call_uuid, ticket_no)`` is awaited after every ticket the bot files (即办 or not), also one filed after
the call ended, so the call log links it. ``caller_for(call_uuid)`` / ``recording_for(call_uuid)`` give the
caller's number and the call's recording file name when the controller knows them (the dialplan hands the bot
only the UUID). :attr:`SpeechBot.turn_seconds` is the histogram ``hotline_bot_turn_seconds`` of the turn latency
(end of the caller's speech to the bot's first audio frame), in no registry: `hotline run` shows it on the
console's /metrics; `hotline bot` alone serves no HTTP, so there it is not exported.

Ticket writes outlive the call: the AudioSocket server cancels a call's dialogue
``asr.audiosocket.handler_grace_s`` after the caller hung up, but a ticket it is writing then (SQLite may wait
30 s for a lock) is finished in the background (:class:`TicketWrites`); one that fails after its call ended is
logged as an error with the call's id, and :meth:`SpeechBot.close` waits for the writes in progress.

Dispatch suggestion: the best category of the dispatch suggester is stored on the ticket (``category``) when it
is a category of the category tree; the department is not stored (tickets get a department only when a
dispatcher dispatches them, and the console shows the suggester's ranking then) — it is not written into the
content either, which stays the caller's own words (the dispatch model learns from it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import jieba
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from asr.audiosocket_server import AudioSocketServer, AudioSocketSession
from asr.dialogue import (
    BotOutcome,
    CallLookup,
    Dialogue,
    DialogueConfig,
    Intake,
    Trace,
    opening,
)
from asr.prompts import Prompts, load_prompts
from asr.recognizer import RecognizerFactory, make_recognizer_factory
from asr.tts import CachedTts, build_tts
from config import Settings
from config.settings import replace_settings
from knowledge import services as kb
from knowledge.retrieval import Answer, KnowledgeIndex
from tickets import outbox
from tickets import services as tickets
from tickets.categories import load_categories
from tickets.dispatch_suggest import DispatchSuggester
from tickets.errors import InvalidInput

log = logging.getLogger(__name__)

OutcomeHandler = Callable[[str, BotOutcome], Awaitable[None]]
TicketHandler = Callable[
    [str, str], Awaitable[None]
]  # (call uuid, ticket number) of every ticket filed
# seconds: the 1 s target of the peak (issue #11) sits on a bucket edge
TURN_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
BOT_ACTOR = tickets.Actor(name="语音机器人", role="bot")
SMS_SUBJECT = "12345热线"


def live_settings(settings: Settings) -> Settings:
    """The recogniser settings for live calls: the bot's beam width, end-of-utterance and speculative pauses."""
    bot = settings.asr.bot
    return replace_settings(
        settings,
        {
            "asr": {
                "whisper": {"beam_size": bot.beam_size},
                "vad": {
                    "min_silence_ms": bot.vad_min_silence_ms,
                    "speculative_ms": bot.vad_speculative_ms,
                },
            }
        },
    )


def hotwords_of(index: KnowledgeIndex, limit: int) -> list[str]:
    """The recogniser's hot-words: entry keywords first, then the other domain words, at most ``limit``."""
    words = [k for e in index.entries() for k in e.keywords] + index.vocabulary()
    return list(dict.fromkeys(words))[:limit]


class TicketWrites:
    """Ticket writes of the bot's calls, run apart from the calls: a write the call's dialogue stops waiting for
    (the server cancels it after the caller left) goes on, bounded by ``timeout_s``, and its outcome is logged.
    ``on_filed`` hears of every ticket filed, in the write's own task (so also after the call ended)."""

    def __init__(self, timeout_s: float, on_filed: TicketHandler | None = None) -> None:
        self.timeout_s = timeout_s
        self.on_filed = on_filed
        self._pending: set[asyncio.Task[str]] = set()

    @property
    def pending(self) -> int:
        """Writes in progress."""
        return len(self._pending)

    async def run(self, call_id: str, write: Coroutine[Any, Any, str]) -> str:
        """The ticket number ``write`` returns; if the caller of ``run`` is cancelled, the write is not."""
        task = asyncio.create_task(self._bounded(call_id, write), name=f"bot-ticket-{call_id}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(functools.partial(_report_orphan, call_id))
            raise

    async def drain(self) -> None:
        """Until every write in progress has finished (shutdown)."""
        await asyncio.gather(*self._pending, return_exceptions=True)

    async def _bounded(self, call_id: str, write: Coroutine[Any, Any, str]) -> str:
        async with asyncio.timeout(self.timeout_s):
            ticket_no = await write
        if self.on_filed is not None:
            try:
                await self.on_filed(call_id, ticket_no)
            except Exception:  # the ticket stands; only its link in the call log is missing
                log.exception("bot call %s: reporting ticket %s failed", call_id, ticket_no)
        return ticket_no


def _report_orphan(call_id: str, task: asyncio.Task[str]) -> None:
    """The outcome of a ticket write whose call had already ended: nobody else reports it."""
    error = None if task.cancelled() else task.exception()
    if task.cancelled() or error is not None:
        # The exception's class only: its text may quote the caller's words or number.
        log.error(
            "bot call %s: the ticket could not be filed after the call ended (%s)",
            call_id,
            "cancelled" if error is None else type(error).__name__,
        )
    else:
        log.info("bot call %s: ticket %s filed after the call ended", call_id, task.result())


class HotlineDesk:
    """The bot's view of the domain: answers from the knowledge index, misses and tickets via the services."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        index: KnowledgeIndex,
        suggester: DispatchSuggester | None = None,
        on_ticket: TicketHandler | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.index = index
        self.suggester = suggester
        self.tz = ZoneInfo(settings.timezone)
        self.writes = TicketWrites(settings.asr.bot.ticket_write_timeout_s, on_ticket)
        self._stamp: tuple[tuple[int, datetime | None], date] | None = None

    @classmethod
    async def load(
        cls,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        suggester: DispatchSuggester | None = None,
        on_ticket: TicketHandler | None = None,
    ) -> HotlineDesk:
        desk = cls(
            settings, sessionmaker, KnowledgeIndex.from_settings(settings), suggester, on_ticket
        )
        await desk.refresh()
        return desk

    async def refresh(self) -> bool:
        """Rebuild the index when the knowledge base changed (or the day did: validity dates); True if rebuilt."""
        today = datetime.now(self.tz).date()
        async with self.sessionmaker() as session:
            stamp = (await kb.change_stamp(session), today)
            if stamp == self._stamp:
                return False
            entries = [kb.indexed(e) for e in await kb.published_on(session, today)]
        # the embeddings of unchanged phrasings are taken from the index in use
        index = await asyncio.to_thread(
            KnowledgeIndex.from_settings, self.settings, entries, previous=self.index
        )
        self.index, self._stamp = index, stamp
        log.info("knowledge index rebuilt: %d entries", len(index))
        return True

    def hotwords(self, limit: int) -> list[str]:
        return hotwords_of(self.index, limit)

    async def ask(self, text: str, context: Answer | None = None) -> Answer:
        return await asyncio.to_thread(functools.partial(self.index.ask, text, context=context))

    async def send_answer(self, phone: str, answer: Answer) -> None:
        """Queue the full written answer (with its links) to ``phone`` by SMS in the outbox, committed."""
        async with self.sessionmaker() as session:
            outbox.enqueue(
                session,
                channel=outbox.SMS,
                recipient=phone,
                subject=SMS_SUBJECT,
                body=f"您咨询的“{answer.question}”：{answer.answer_text or answer.answer}",
                now=datetime.now(UTC),
            )
            await session.commit()

    async def record_miss(self, text: str, answer: Answer, reason: str) -> None:
        async with self.sessionmaker() as session:
            await kb.record_miss(session, text, answer.answer_id, answer.score, reason)

    async def close_instant(self, intake: Intake, answer: Answer) -> str:
        return await self.writes.run(intake.call_id, self._close_instant(intake, answer))

    async def create_ticket(self, intake: Intake) -> str:
        return await self.writes.run(intake.call_id, self._create_ticket(intake))

    async def _close_instant(self, intake: Intake, answer: Answer) -> str:
        draft = await self._draft(intake, knowledge_id=str(answer.answer_id))
        async with self.sessionmaker() as session:
            ticket = await tickets.close_instant(
                session,
                draft,
                answer.answer_text or answer.answer,
                BOT_ACTOR,
                settings=self.settings,
            )
            return ticket.ticket_no

    async def _create_ticket(self, intake: Intake) -> str:
        draft = await self._draft(intake)
        async with self.sessionmaker() as session:
            ticket = await tickets.create_ticket(session, draft, BOT_ACTOR, settings=self.settings)
            return ticket.ticket_no

    async def _draft(self, intake: Intake, knowledge_id: str | None = None) -> tickets.TicketDraft:
        return tickets.TicketDraft(
            channel="bot",
            caller_phone=intake.caller_phone,
            content=intake.content,
            kind=intake.kind,
            transcript=intake.transcript,
            recording=intake.recording,
            call_id=intake.call_id,
            knowledge_id=knowledge_id,
            category=await self._category(intake.content),
        )

    async def _category(self, text: str) -> str | None:
        """The suggester's best category, if it is one of the category tree."""
        if self.suggester is None or self.suggester.label_kind != "category":
            return None
        try:
            best = await asyncio.to_thread(self.suggester.suggest, text, 1)
        except Exception:
            log.exception("dispatch suggestion failed; ticket filed without a category")
            return None
        if not best:
            return None
        try:
            return load_categories().validate(best[0].label)
        except InvalidInput:
            return None


class SpeechBot:
    """The service: one :class:`~asr.dialogue.Dialogue` per AudioSocket call."""

    def __init__(
        self,
        settings: Settings,
        *,
        recognizers: RecognizerFactory,
        tts: CachedTts,
        desk: HotlineDesk,
        prompts: Prompts,
        on_outcome: OutcomeHandler | None = None,
        caller_for: CallLookup | None = None,
        recording_for: CallLookup | None = None,
        trace: Trace | None = None,
        host: str | None = None,
        port: int | None = None,
        owns_recognizers: bool = True,
    ) -> None:
        self.settings = settings
        self.recognizers = recognizers
        self.tts = tts
        self.desk = desk
        self.prompts = prompts
        self.cfg = DialogueConfig.from_settings(settings.asr.bot)
        self.on_outcome = on_outcome
        self.caller_for = caller_for
        self.recording_for = recording_for
        self.trace = trace
        self.outcomes: Counter[str] = Counter()  # by reason, for metrics
        self.last_outcomes: dict[str, BotOutcome] = {}  # by call uuid (the latest 100)
        # in no registry: whoever serves /metrics in this process registers it (hotline.wiring)
        self.turn_seconds = Histogram(
            "hotline_bot_turn_seconds",
            "Speech-bot turn latency: end of the caller's speech (VAD end of turn) to "
            "the first audio frame of the bot's reply",
            buckets=TURN_BUCKETS,
            registry=None,
        )
        update = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        self.server = AudioSocketServer(
            self.handle, settings.asr.audiosocket.model_copy(update=update)
        )
        self._owns_recognizers = owns_recognizers
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        """Accept calls; the fixed prompts, then the answers' first pieces, are synthesised in the background
        (a sentence a caller needs before that is synthesised on demand, once)."""
        await asyncio.to_thread(
            jieba.initialize
        )  # the ticket services segment with jieba: load it now, not mid-call
        await self.server.start()
        self._tasks = [
            asyncio.create_task(self._keep_index_fresh(), name="bot-kb-refresh"),
            asyncio.create_task(self._warm_prompts(), name="bot-tts-warm"),
        ]

    async def _warm_prompts(self) -> None:
        """The fixed prompts first (every caller hears them), then the first piece of every answer."""
        for text in self.prompts.fixed():
            with contextlib.suppress(Exception):
                await self.tts.asynthesize(text)
        await self._warm_answers()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.close()
        await (
            self.desk.writes.drain()
        )  # tickets of calls that ended (or were just hung up) are still filed
        if self._owns_recognizers:
            self.recognizers.close()

    async def handle(self, session: AudioSocketSession) -> None:
        """One call: the dialogue, then the outcome report, then the hangup frame (Asterisk continues)."""
        dialogue = Dialogue(
            session,
            self.recognizers(8000),
            tts=self.tts,
            desk=self.desk,
            prompts=self.prompts,
            cfg=self.cfg,
            caller_for=self.caller_for,
            recording_for=self.recording_for,
            trace=self.trace,
            turns=self.turn_seconds.observe,
        )
        outcome = await dialogue.run()
        call_id = str(session.call_id)
        self.outcomes[outcome.reason] += 1
        self.last_outcomes[call_id] = outcome
        while len(self.last_outcomes) > 100:
            del self.last_outcomes[next(iter(self.last_outcomes))]
        log.info(
            "bot call %s: %s (%s) ticket=%s answer=%s",
            call_id,
            outcome.next,
            outcome.reason,
            outcome.ticket_no,
            outcome.answer_id,
        )
        await self._report(call_id, outcome)
        await session.hangup()

    async def _report(self, call_id: str, outcome: BotOutcome) -> None:
        if self.on_outcome is None:
            return
        try:
            async with asyncio.timeout(self.settings.asr.bot.outcome_timeout_s):
                await self.on_outcome(call_id, outcome)
        except Exception:
            log.exception("bot call %s: reporting the outcome failed", call_id)

    async def _keep_index_fresh(self) -> None:
        while True:
            await asyncio.sleep(self.settings.asr.bot.kb_poll_s)
            try:
                if await self.desk.refresh():
                    await self._warm_answers()
            except Exception:
                log.exception("knowledge index refresh failed; keeping the current one")

    async def _warm_answers(self) -> None:
        """Synthesise what a caller hears first of every answer ahead of the first caller who needs it (one
        at a time, in the background); the rest is synthesised while that piece plays, and then cached."""
        for entry in self.desk.index.entries():
            with contextlib.suppress(Exception):
                await self.tts.asynthesize(opening(entry.answer_speech, self.cfg.long_answer_chars))


async def build_bot(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    on_outcome: OutcomeHandler | None = None,
    caller_for: CallLookup | None = None,
    recording_for: CallLookup | None = None,
    recognizers: RecognizerFactory | None = None,
    trace: Trace | None = None,
    host: str | None = None,
    port: int | None = None,
    suggester: DispatchSuggester | None = None,
    on_ticket: TicketHandler | None = None,
) -> SpeechBot:
    """The bot on the configured engine, TTS, prompts, knowledge base and dispatch suggester (loaded from the
    settings unless one already loaded is given)."""
    prompts = load_prompts(settings)
    if suggester is None:
        suggester = await asyncio.to_thread(DispatchSuggester.from_settings, settings)
    desk = await HotlineDesk.load(settings, sessionmaker, suggester=suggester, on_ticket=on_ticket)
    owns = recognizers is None
    if recognizers is None:
        recognizers = await asyncio.to_thread(
            make_recognizer_factory,
            live_settings(settings),
            desk.hotwords(settings.asr.bot.hotwords_max),
        )
    return SpeechBot(
        settings,
        recognizers=recognizers,
        tts=build_tts(settings.tts),
        desk=desk,
        prompts=prompts,
        on_outcome=on_outcome,
        caller_for=caller_for,
        recording_for=recording_for,
        trace=trace,
        host=host,
        port=port,
        owns_recognizers=owns,
    )
