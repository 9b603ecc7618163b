"""The speech bot's conversation (对话流程) on one call: greet → listen → knowledge base → 即办 or ticket.

::

    greeting ──question──► knowledge base ──confident──► answer ──"解决了吗？" yes/1──► 即办 ticket, goodbye
        │                         │ not confident                          no/2/unclear ┐
        │ silence ×2 → human      └──► knowledge miss ──► "问题和具体地点" ──► ticket, number read back, goodbye
        └─ DTMF 0 or "人工" at any moment ──► outcome ``queue`` (the dialplan requeues to a human)
        └─ DTMF 9 or "留言" at any moment ──► outcome ``message`` (the dialplan records a voice message)

    two close entries ──"您是想问A，还是B？" 1/2/said──► answer     (neither, silence: not confident)
    "解决了吗？" ──a question instead──► knowledge base, in the context of the answer ──confident──► answer

:class:`CallerInput` is the caller's side: it feeds every audio frame to the recogniser, turns Finals and keys
into inputs, and stops the bot's speech when the caller talks over it (barge-in, 打断: SpeechStart from the
VAD, or an energy onset when the VAD is late). :class:`Dialogue` is the flow; it reaches the knowledge base and
the ticket services only through a :class:`Desk`, and ends with a :class:`BotOutcome`.

Decisions:
* Two close entries (``Answer.alternatives``): the bot asks which is meant (DTMF 1/2, 「第一个」, or words of one
  question); the miss log records that a clarification was needed (reason ``ambiguous``, the chosen entry).
* After an answer, a question instead of yes/no is a follow-up (追问, at most ``follow_ups``), asked in the
  context of that answer (``Desk.ask(text, context)``); one the knowledge base cannot answer is not taken.
* An answer longer than ``long_answer_chars`` is spoken in short form; with ``answer_sms`` its full text goes
  to the caller's known mobile number by SMS (outbox), once per entry and call, and the bot says so.
* Silence (times and counts in ``asr.bot``): after ``silence_timeout_s`` the bot asks again; after
  ``max_silences`` silences in a row the caller is routed on — to a ticket when they have said something (their
  words are never lost), to a human when they have said nothing at all.
* Unknown caller number (the AMI controller did not know it, or it is not a valid Chinese number): the ticket
  services accept no placeholder, so the caller keys in a callback number ending with # (also for a 即办
  record); after ``phone_attempts`` failures they go to a human.
* The caller hangs up before the end: a ticket is still filed when they said something and their number is
  known; otherwise the question stays as a knowledge miss and the transcript goes out with the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

from asr import intents
from asr.audio import SAMPLE_RATE, frame_dbfs, trim_silence
from asr.audiosocket_server import Audio, AudioSocketSession, Dtmf
from asr.prompts import Prompts
from asr.recognizer import Final, RecognizerSession, SpeechStart
from asr.tts import CachedTts, digits_for_speech, speak_sentences, speech_pieces
from config.pii import mask_phone
from config.settings import BotSettings
from knowledge.retrieval import NO_ANSWER, Answer
from knowledge.speech import short_form
from tickets.errors import InvalidInput
from tickets.phone import is_mobile, normalise_phone

log = logging.getLogger(__name__)
T = TypeVar("T")

Next = Literal["hangup", "queue", "message"]
CallLookup = Callable[[str], Awaitable[str | None]]
Trace = Callable[[str, str, float], None]  # (call id, mark, time.monotonic())
TurnObserver = Callable[
    [float], None
]  # seconds from the end of the caller's speech to the bot's first audio
# How long after the caller went quiet an utterance still counts as being recognised (VAD end + decode).
PENDING_GRACE_S = 3.0
# Longest wait for the caller to finish speaking before an answer is played anyway.
SPEAKING_WAIT_S = 3.0
# Frames above this level count as the caller's voice (for "the caller has gone quiet"); telephone speech
# often sits at -45 dBFS between syllables, the line's floor well below -60.
VOICE_FLOOR_DBFS = -50.0
TRANSCRIPT_MAX = 20000
CONTENT_MAX = 4000
CLARIFY_QUESTION_CHARS = 16  # a longer question is shortened in the clarifying question


@dataclass(frozen=True)
class BotOutcome:
    """How the bot ended the call. ``next``: ``hangup`` (settled), ``queue`` (back to a human) or ``message``
    (the caller would rather leave a voice message, 留言: said so or pressed 9).

    ``reason``: solved 即办 | ticket | human (asked for one) | silence | no_number | caller_gone | error.
    """

    next: Next
    reason: str
    transcript: str
    ticket_no: str | None = None
    answer_id: int | None = None
    caller: str | None = None


@dataclass(frozen=True)
class Intake:
    """What the bot learnt on the call, for a ticket (受理信息)."""

    call_id: str
    caller_phone: str
    content: str
    transcript: str
    kind: str
    recording: str | None = None


class Desk(Protocol):
    """The knowledge base and the ticket services, as the dialogue needs them (see asr.bot.HotlineDesk)."""

    async def ask(self, text: str, context: Answer | None = None) -> Answer: ...

    async def send_answer(self, phone: str, answer: Answer) -> None: ...

    async def record_miss(self, text: str, answer: Answer, reason: str) -> None: ...

    async def close_instant(self, intake: Intake, answer: Answer) -> str: ...

    async def create_ticket(self, intake: Intake) -> str: ...


@dataclass(frozen=True)
class DialogueConfig:
    """The dialogue's timings and limits in seconds, built from ``asr.bot`` (:meth:`from_settings`)."""

    silence_timeout_s: float
    max_silences: int
    filler_after_s: float
    end_of_turn_s: float
    vad_min_silence_s: float
    barge_in_dbfs: float
    barge_in_window_s: float
    noisy_line_s: float
    dtmf_timeout_s: float
    phone_attempts: int
    follow_ups: int = 0
    long_answer_chars: int = 10_000
    answer_sms: bool = False

    @classmethod
    def from_settings(cls, bot: BotSettings) -> DialogueConfig:
        return cls(
            silence_timeout_s=bot.silence_timeout_s,
            max_silences=bot.max_silences,
            filler_after_s=bot.filler_after_ms / 1000,
            end_of_turn_s=bot.end_of_turn_s,
            vad_min_silence_s=bot.vad_min_silence_ms / 1000,
            barge_in_dbfs=bot.barge_in_dbfs,
            barge_in_window_s=bot.barge_in_energy_ms / 1000,
            noisy_line_s=bot.noisy_line_s,
            dtmf_timeout_s=bot.dtmf_timeout_s,
            phone_attempts=bot.phone_attempts,
            follow_ups=bot.follow_ups,
            long_answer_chars=bot.long_answer_chars,
            answer_sms=bot.answer_sms,
        )


# --- the caller's side ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    text: str


@dataclass(frozen=True)
class Key:
    digit: str


@dataclass(frozen=True)
class Gone:
    reason: str


@dataclass(frozen=True)
class Broken:
    """The recogniser failed: the bot cannot hear the caller any more."""


Input = Utterance | Key | Gone | Broken


class CallerGone(Exception):
    pass


class HumanWanted(Exception):
    pass


class MessageWanted(Exception):
    pass


class RecognizerBroken(Exception):
    pass


class CallerInput:
    """Reads the call: audio → recogniser → :class:`Utterance`; keys → :class:`Key`; the end → :class:`Gone`."""

    def __init__(
        self,
        session: AudioSocketSession,
        recogniser: RecognizerSession,
        cfg: DialogueConfig,
        *,
        mark: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.recogniser = recogniser
        self.cfg = cfg
        self.clock = clock
        self.playing = 0  # prompts being played now (set by the dialogue)
        self.barge_ins: list[
            tuple[str, float]
        ] = []  # (trigger, when) of each barge-in that stopped speech
        self.energy_barge_in = True  # off on a noisy line
        self._mark = mark
        self._inputs: deque[Input] = deque()
        self._changed = asyncio.Event()
        self._in_speech = False  # SpeechStart seen, its Final not yet
        self._fed_s = 0.0  # seconds of audio given to the recogniser
        # when (on ``clock``) the caller's last recognised speech ended, until the bot answers it (a turn)
        self.turn_end: float | None = None
        self._last_voice_at = 0.0
        self._window: deque[bool] = deque(maxlen=max(1, round(cfg.barge_in_window_s / 0.02)))
        self._onset_fired = False
        self._loud_without_speech = 0.0

    # -- what the dialogue reads --------------------------------------------------------------------------
    def take(self) -> Input | None:
        return self._inputs.popleft() if self._inputs else None

    @property
    def has_input(self) -> bool:
        return bool(self._inputs)

    def speech_pending(self, now: float) -> bool:
        """The caller is speaking, or finished an utterance whose text is still being recognised."""
        return (
            self._in_speech
            and now - self._last_voice_at < self.cfg.vad_min_silence_s + PENDING_GRACE_S
        )

    def quiet_for(self, now: float) -> float:
        return now - self._last_voice_at

    async def changed(self, within_s: float) -> None:
        """Until something happens on the call, at most ``within_s`` seconds."""
        if within_s <= 0:
            return
        self._changed.clear()
        try:
            async with asyncio.timeout(within_s):
                await self._changed.wait()
        except TimeoutError:
            pass

    # -- the reader ---------------------------------------------------------------------------------------
    async def run(self) -> None:
        reason = "closed"
        try:
            async for event in self.session.events():
                if isinstance(event, Audio):
                    if not await self._audio(event.pcm):
                        return
                elif isinstance(event, Dtmf):
                    self._barge_in("dtmf")
                    self._push(Key(event.digit))
                else:
                    reason = getattr(event, "reason", "hangup")
            # The call ended: what the caller said last is decoded before the dialogue hears of the end.
            try:
                self._recognised(await self.recogniser.flush(), self.clock())
            except Exception:
                log.exception("call %s: recogniser flush failed", self.session.call_id)
        finally:
            self._push(Gone(reason))

    async def _audio(self, pcm: bytes) -> bool:
        self._energy(pcm)
        fed_at = self.clock()
        self._fed_s += len(pcm) / (2 * SAMPLE_RATE)
        try:
            events = await self.recogniser.feed(pcm)
        except Exception:
            log.exception("call %s: recogniser failed", self.session.call_id)
            self._push(Broken())
            return False
        self._recognised(events, fed_at)
        return True

    def _recognised(self, events: list[Any], fed_at: float) -> None:
        """``fed_at``: when the audio that gave ``events`` was fed (the speech of a Final ended that audio's
        length minus its end before, as the VAD placed it)."""
        for ev in events:
            if isinstance(ev, SpeechStart):
                self._in_speech = True
                self._last_voice_at = max(self._last_voice_at, self.clock())
                self._loud_without_speech = 0.0
                self._barge_in("vad")
            elif isinstance(ev, Final) and ev.text.strip():
                self._in_speech = False
                self.turn_end = fed_at - max(0.0, self._fed_s - ev.end_s)
                self._mark("final")
                self._push(Utterance(ev.text.strip()))

    def _energy(self, pcm: bytes) -> None:
        level = frame_dbfs(pcm)
        loud = level >= self.cfg.barge_in_dbfs
        self._window.append(loud)
        seconds = len(pcm) / (2 * SAMPLE_RATE)
        if level >= VOICE_FLOOR_DBFS:
            self._last_voice_at = self.clock()
        if loud:
            if not self._in_speech:
                self._loud_without_speech += seconds
                if self.energy_barge_in and self._loud_without_speech >= self.cfg.noisy_line_s:
                    self.energy_barge_in = False
                    log.info(
                        "call %s: noisy line, energy barge-in off (VAD only)", self.session.call_id
                    )
        onset = len(self._window) == self._window.maxlen and sum(self._window) >= 0.75 * len(
            self._window
        )
        if onset and not self._onset_fired and self.energy_barge_in:
            self._onset_fired = True
            self._barge_in("energy")
        elif not any(self._window):
            self._onset_fired = False

    def _barge_in(self, trigger: str) -> None:
        if self.playing:
            self.session.stop_playback()
            self.barge_ins.append((trigger, self.clock()))
            self._mark("barge_in")

    def _push(self, item: Input) -> None:
        self._inputs.append(item)
        self._changed.set()


# --- the conversation -------------------------------------------------------------------------------------


@dataclass
class Transcript:
    """The call in words, both sides, in order (通话转写)."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def bot(self, text: str) -> None:
        self.lines.append(("机器人", text))

    def caller(self, text: str) -> None:
        self.lines.append(("来电人", text))

    @property
    def caller_words(self) -> list[str]:
        return [text for who, text in self.lines if who == "来电人"]

    def text(self) -> str:
        return "\n".join(f"{who}：{text}" for who, text in self.lines)[:TRANSCRIPT_MAX]


def opening(answer: str, long_answer_chars: int) -> str:
    """What the caller hears first of an answer: the first piece of its spoken form (short when long); the
    next piece is synthesised while it plays."""
    return speech_pieces(short_form(answer, long_answer_chars))[0]


def brief(question: str) -> str:
    """A question as the clarifying question names it: its first clause, at most ``CLARIFY_QUESTION_CHARS``."""
    text = question.strip().rstrip("。？?！!")
    if len(text) <= CLARIFY_QUESTION_CHARS:
        return text
    return text.split("，")[0][:CLARIFY_QUESTION_CHARS]


class Dialogue:
    """One call's conversation; :meth:`run` returns the outcome (it never raises but for cancellation)."""

    def __init__(
        self,
        session: AudioSocketSession,
        recogniser: RecognizerSession,
        *,
        tts: CachedTts,
        desk: Desk,
        prompts: Prompts,
        cfg: DialogueConfig,
        caller_for: CallLookup | None = None,
        recording_for: CallLookup | None = None,
        trace: Trace | None = None,
        turns: TurnObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.call_id = str(session.call_id)
        self.session = session
        self.tts = tts
        self.desk = desk
        self.prompts = prompts
        self.cfg = cfg
        self.clock = clock
        self.transcript = Transcript()
        self.caller = CallerInput(session, recogniser, cfg, mark=self._mark, clock=clock)
        self.caller_phone: str | None = None
        self.answer: Answer | None = None
        self.ticket_no: str | None = None
        self._caller_for = caller_for
        self._recording_for = recording_for
        self._trace = trace
        self._turns = turns
        self._tasks: set[asyncio.Task[Any]] = set()
        self._missed = False
        self._texted: set[int] = set()  # answers sent by SMS on this call
        self._filler_playing = False

    async def run(self) -> BotOutcome:
        pump = asyncio.create_task(self.caller.run(), name=f"bot-caller-{self.call_id}")
        try:
            return await self._converse()
        except HumanWanted:
            await self.say(self.prompts.to_human, skip_if_answered=False)
            return self._outcome("queue", "human")
        except MessageWanted:  # the dialplan prompts for the message
            return self._outcome("message", "message")
        except CallerGone:
            return await self._after_caller_left()
        except RecognizerBroken:
            await self.say(self.prompts.apology, skip_if_answered=False)
            return self._outcome("queue", "error")
        except Exception:
            log.exception("call %s: the dialogue failed; the caller goes to a human", self.call_id)
            await self.say(self.prompts.apology, skip_if_answered=False)
            return self._outcome("queue", "error")
        finally:
            for task in self._tasks:
                task.cancel()
            pump.cancel()
            await asyncio.gather(pump, *self._tasks, return_exceptions=True)

    # -- the flow -----------------------------------------------------------------------------------------
    async def _converse(self) -> BotOutcome:
        question = await self._question()
        if question is None:
            await self.say(self.prompts.to_human, skip_if_answered=False)
            return self._outcome("queue", "silence")
        answer = self.answer = await self._resolve(question)
        if not answer.confident:
            await self._miss(
                question, answer, "unanswered" if answer.answer_id is None else "low_confidence"
            )
            return await self._take_ticket()
        follow_ups = self.cfg.follow_ups
        while True:
            await self._speak_answer(answer)
            verdict = await self._solved(answer, follow_ups)
            if not isinstance(verdict, tuple):
                break
            question, answer = verdict
            self.answer, follow_ups = answer, follow_ups - 1
        if verdict != "yes":
            await self._miss(question, answer, "not_solved")
            return await self._take_ticket()
        phone = await self._phone_number()
        if phone is None:
            await self.say(self.prompts.to_human, skip_if_answered=False)
            return self._outcome("queue", "no_number")
        intake = await self._intake(phone)
        self.ticket_no = await self._thinking(self.desk.close_instant(intake, answer))
        self._mark("ticket")
        await self.say(self.prompts.solved_goodbye, skip_if_answered=False)
        return self._outcome("hangup", "solved")

    async def _resolve(self, question: str, context: Answer | None = None) -> Answer:
        """The knowledge base's answer to ``question`` (a follow-up to ``context``); two close entries are
        settled by asking the caller (:meth:`_clarify`)."""
        answer = await self._thinking(self._consult(question, context))
        return await self._clarify(question, answer) if answer.clarifies else answer

    async def _clarify(self, question: str, answer: Answer) -> Answer:
        """「您是想问A，还是B？」: the entry the caller picks (DTMF 1/2 or words), confident; ``answer`` as it was
        when they mean neither or do not say. The miss log records that the question needed it."""
        second = answer.alternatives[0].entry
        questions = (answer.question, second.question)
        prompt = self.prompts.clarification(*(brief(q) for q in questions))
        chosen: int | None = None
        for _ in range(self.cfg.max_silences):
            await self.say(prompt, mark="clarify")
            heard = await self._listen(self.cfg.silence_timeout_s, want=Utterance | Key)
            if isinstance(heard, Key):
                chosen = intents.pick_key(heard.digit)
            elif isinstance(heard, Utterance):
                if intents.neither(heard.text):
                    break
                chosen = intents.pick(heard.text, questions)
            if chosen is not None:
                break
        if chosen is not None:
            picked = replace(answer, confident=True, alternatives=())
            answer = picked if chosen == 0 else Answer.of(second, answer.score, True)
            await self._thinking(self.tts.asynthesize(self._opening(answer)))
        await self._miss(question, answer, "ambiguous")
        return answer

    async def _speak_answer(self, answer: Answer) -> None:
        """The answer, in short form when long; the full text by SMS when the bot may send one (and says so)."""
        spoken = self._spoken(answer)
        await self.say(spoken, skip_if_answered=False, mark="answer")
        if spoken != answer.answer and await self._text(answer):
            await self.say(self.prompts.answer_by_sms, skip_if_answered=False)

    def _spoken(self, answer: Answer) -> str:
        return short_form(answer.answer, self.cfg.long_answer_chars)

    def _opening(self, answer: Answer) -> str:
        return opening(answer.answer, self.cfg.long_answer_chars)

    async def _text(self, answer: Answer) -> bool:
        """Queue the full answer by SMS to the caller's mobile, once per entry and call; True if queued."""
        if not self.cfg.answer_sms or answer.answer_id is None or answer.answer_id in self._texted:
            return False
        phone = await self._known_phone()
        if phone is None or not is_mobile(phone):
            return False
        try:
            await self.desk.send_answer(phone, answer)
        except Exception:
            log.exception("call %s: answer %s not queued by SMS", self.call_id, answer.answer_id)
            return False
        self._texted.add(answer.answer_id)
        log.info(
            "call %s: answer %s queued by SMS to %s",
            self.call_id,
            answer.answer_id,
            mask_phone(phone),
        )
        return True

    async def _question(self) -> str | None:
        """The caller's question, or None after ``max_silences`` silences."""
        prompt = self.prompts.greeting
        for _ in range(self.cfg.max_silences):
            await self.say(prompt)
            heard = await self._listen(self.cfg.silence_timeout_s, want=Utterance)
            if isinstance(heard, Utterance):
                return heard.text
            prompt = self.prompts.reprompt_question
        return None

    async def _solved(
        self, answer: Answer, follow_ups: int
    ) -> intents.YesNo | tuple[str, Answer] | None:
        """Did ``answer`` settle it? Voice yes/no or DTMF 1/2; None after the tries (taken as not solved). While
        ``follow_ups`` remain, a question the knowledge base answers in the context of ``answer`` is returned
        with its answer instead."""
        prompt = self.prompts.ask_solved
        for _ in range(self.cfg.max_silences):
            await self.say(prompt)
            heard = await self._listen(self.cfg.silence_timeout_s, want=Utterance | Key)
            if isinstance(heard, Key) and (verdict := intents.yes_no_key(heard.digit)):
                return verdict
            if isinstance(heard, Utterance):
                if verdict := intents.yes_no(heard.text):
                    return verdict
                if follow_ups > 0:
                    followed = await self._resolve(heard.text, answer)
                    if followed.confident:
                        return heard.text, followed
            prompt = self.prompts.reprompt_solved
        return None

    async def _take_ticket(self) -> BotOutcome:
        await self._matter()
        phone = await self._phone_number()
        if phone is None:
            await self.say(self.prompts.to_human, skip_if_answered=False)
            return self._outcome("queue", "no_number")
        self.ticket_no = await self._thinking(self._file(await self._intake(phone)))
        self._mark("ticket")
        await self.say(
            self.prompts.ticket(digits_for_speech(self.ticket_no)), skip_if_answered=False
        )
        await self.say(self.prompts.goodbye, skip_if_answered=False)
        return self._outcome("hangup", "ticket")

    async def _matter(self) -> None:
        """The matter and the place: sentences until the caller pauses ``end_of_turn_s`` (or stays silent)."""
        prompt = self.prompts.ask_matter
        for _ in range(self.cfg.max_silences):
            await self.say(prompt, mark="ask_matter")
            if isinstance(
                await self._listen(self.cfg.silence_timeout_s, want=Utterance), Utterance
            ):
                while isinstance(
                    await self._listen(self.cfg.end_of_turn_s, want=Utterance), Utterance
                ):
                    pass
                return
            prompt = self.prompts.reprompt_matter

    async def _known_phone(self) -> str | None:
        """The caller's number as the AMI controller knows it (normalised), or None; the caller is not asked."""
        if self.caller_phone:
            return self.caller_phone
        known = await self._lookup(self._caller_for)
        if known:
            try:
                self.caller_phone = normalise_phone(known)
                return self.caller_phone
            except InvalidInput:
                log.info(
                    "call %s: caller id %s is not a callback number",
                    self.call_id,
                    mask_phone(known),
                )
        return None

    async def _phone_number(self) -> str | None:
        """The caller's number: from the AMI controller, else keyed in (ending with #)."""
        if known := await self._known_phone():
            return known
        prompt = self.prompts.ask_phone
        for _ in range(self.cfg.phone_attempts):
            await self.say(prompt, mark="ask_phone")
            keyed = await self._keyed_number()
            try:
                self.caller_phone = normalise_phone(keyed)
                return self.caller_phone
            except InvalidInput:
                prompt = self.prompts.bad_phone
        return None

    async def _keyed_number(self) -> str:
        digits = ""
        while True:
            heard = await self._listen(self.cfg.dtmf_timeout_s, want=Key, keys_are_digits=True)
            if heard is None or heard.digit == "#":
                return digits
            if heard.digit == "*":
                digits = ""
            elif heard.digit.isdigit():
                digits += heard.digit

    async def _after_caller_left(self) -> BotOutcome:
        """The caller hung up: keep what they said (a ticket when their number is known)."""
        while (left := self.caller.take()) is not None:
            if isinstance(left, Utterance):
                self.transcript.caller(left.text)
        if self.ticket_no is None and self.transcript.caller_words:
            phone = await self._known_phone()
            if phone is not None:
                try:
                    self.ticket_no = await self.desk.create_ticket(await self._intake(phone))
                except Exception:
                    log.exception(
                        "call %s: ticket for a caller who left failed (transcript of %d characters)",
                        self.call_id,
                        len(self.transcript.text()),
                    )
            else:
                log.warning(
                    "call %s: caller left without a callback number; kept as a knowledge miss",
                    self.call_id,
                )
                await self._miss(
                    "；".join(self.transcript.caller_words),
                    self.answer,
                    "not_solved" if self.answer and self.answer.confident else "unanswered",
                )
        return self._outcome("hangup", "caller_gone")

    # -- building blocks ----------------------------------------------------------------------------------
    async def say(
        self,
        text: str,
        *,
        skip_if_answered: bool = True,
        when_busy: bool = False,
        mark: str | None = None,
    ) -> bool:
        """Speak ``text``; False if interrupted or skipped.

        A question (``skip_if_answered``) is skipped when the caller already answered (an input waits); any
        other sentence first lets a caller who is speaking finish (up to ``SPEAKING_WAIT_S``).
        """
        if not self.session.connected:
            return False
        if not when_busy:
            deadline = self.clock() + SPEAKING_WAIT_S
            while self.caller.speech_pending(self.clock()) and self.clock() < deadline:
                await self.caller.changed(0.05)
        if skip_if_answered and self.caller.has_input:
            return False
        # Clause by clause: the caller hears the first while the next is synthesised.
        pieces = speak_sentences(self.tts, text)
        pcm = trim_silence(await anext(pieces))
        if self._filler_playing and not when_busy:
            self.session.stop_playback()  # the real answer is ready: it does not wait for the filler to end
        self.transcript.bot(text)
        if mark:
            self._mark(mark)
        self.caller.playing += 1
        try:
            played = await self.session.play(pcm, on_first_frame=self._turn_answered)
            while played and (pcm := await anext(pieces, b"")):
                played = await self.session.play(trim_silence(pcm))
            return played
        finally:
            await pieces.aclose()
            self.caller.playing -= 1

    def _turn_answered(self) -> None:
        """The bot's first audio since the caller last spoke: the turn's latency goes to ``turns``."""
        end, self.caller.turn_end = self.caller.turn_end, None
        if end is not None and self._turns is not None:
            self._turns(max(0.0, self.clock() - end))

    async def _listen(self, timeout_s: float, *, want: Any, keys_are_digits: bool = False) -> Any:
        """The next input of the kinds in ``want``, or None after ``timeout_s`` of silence.

        DTMF 0 and "人工" raise :class:`HumanWanted`, DTMF 9 and "留言" :class:`MessageWanted` (digits while a
        number is keyed in); the caller's hang-up raises :class:`CallerGone`. While the caller is speaking the
        silence clock stands still; when the text is late (the recogniser still working) the filler is played once.
        """
        deadline = self.clock() + timeout_s
        filler_played = keys_are_digits
        while True:
            heard = self.caller.take()
            if isinstance(heard, Gone):
                raise CallerGone(heard.reason)
            if isinstance(heard, Broken):
                raise RecognizerBroken()
            if isinstance(heard, Utterance):
                self.transcript.caller(heard.text)
                if intents.wants_human(heard.text):
                    raise HumanWanted()
                if intents.wants_message(heard.text):
                    raise MessageWanted()
            if isinstance(heard, Key) and heard.digit == "0" and not keys_are_digits:
                raise HumanWanted()
            if isinstance(heard, Key) and heard.digit == "9" and not keys_are_digits:
                raise MessageWanted()
            if heard is not None and isinstance(heard, want):
                return heard
            if heard is not None:
                continue
            now = self.clock()
            wait = deadline - now
            if self.caller.speech_pending(now):
                deadline = max(deadline, now + timeout_s)
                wait = 0.05
                # The caller went quiet (VAD end + filler delay ago) and the text is still not there.
                late = (
                    self.caller.quiet_for(now)
                    >= self.cfg.vad_min_silence_s + self.cfg.filler_after_s
                )
                if late and not filler_played:
                    filler_played = True
                    self._background(self._filler())
            if now >= deadline:
                return None
            await self.caller.changed(wait)

    async def _thinking(self, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work``; if it takes longer than ``filler_after_s`` the filler plays meanwhile (no dead air)."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=self.cfg.filler_after_s)
        if not done:
            self._background(self._filler())
        return await task

    async def _filler(self) -> None:
        self._filler_playing = True
        try:
            await self.say(
                self.prompts.filler, when_busy=True, skip_if_answered=False, mark="filler"
            )
        finally:
            self._filler_playing = False

    async def _consult(self, question: str, context: Answer | None) -> Answer:
        """The knowledge base's answer, its first piece synthesised (cached) before it is spoken."""
        answer = await self.desk.ask(question, context)
        if answer.confident:
            await self.tts.asynthesize(self._opening(answer))
        return answer

    async def _file(self, intake: Intake) -> str:
        """A new ticket; its read-back sentence synthesised while the filler may still play."""
        ticket_no = await self.desk.create_ticket(intake)
        await self.tts.asynthesize(self.prompts.ticket(digits_for_speech(ticket_no)))
        return ticket_no

    def _background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _miss(self, text: str, answer: Answer | None, reason: str) -> None:
        """Remember the question the knowledge base could not settle, once (never fails the call)."""
        if not text.strip() or self._missed:
            return
        self._missed = True
        try:
            await self.desk.record_miss(text, answer or NO_ANSWER, reason)
        except Exception:
            log.exception("call %s: recording the knowledge miss failed", self.call_id)

    async def _lookup(self, lookup: CallLookup | None) -> str | None:
        if lookup is None:
            return None
        try:
            async with asyncio.timeout(2.0):
                return await lookup(self.call_id)
        except Exception:
            log.exception("call %s: call lookup failed", self.call_id)
            return None

    async def _intake(self, phone: str) -> Intake:
        said = "；".join(self.transcript.caller_words)
        return Intake(
            call_id=self.call_id,
            caller_phone=phone,
            content=said[:CONTENT_MAX] or "（来电人未说明）",
            transcript=self.transcript.text(),
            kind=intents.kind_of(said),
            recording=await self._lookup(self._recording_for),
        )

    def _outcome(self, next_: Next, reason: str) -> BotOutcome:
        answer_id = self.answer.answer_id if self.answer and self.answer.confident else None
        return BotOutcome(
            next=next_,
            reason=reason,
            transcript=self.transcript.text(),
            ticket_no=self.ticket_no,
            answer_id=answer_id,
            caller=self.caller_phone,
        )

    def _mark(self, name: str) -> None:
        if self._trace is not None:
            self._trace(self.call_id, name, self.clock())
