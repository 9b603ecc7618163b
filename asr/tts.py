"""Text to speech for the bot: an engine interface, the espeak-ng engine, and a disk cache.

Every engine returns 8 kHz signed-linear 16-bit mono ("slin"), ready for ``AudioSocketSession.play``. The
neural Mandarin voice is ``asr/tts_kokoro.py``; espeak-ng is its fallback.
Texts are spoken piece by piece (``speech_pieces``: a short leading phrase, then clauses and sentences): the
caller hears the first while the next is synthesised (``speak_sentences``). The bot says the same sentences
over and over (greetings, knowledge-base answers), so ``CachedTts`` keeps each piece's synthesis on disk, keyed
by engine, voice, rate and text; concurrent requests for one piece synthesise it once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Protocol

import jieba.posseg as pseg

from asr import audio
from config.errors import HotlineError
from config.settings import TtsSettings

# Digits read one by one, as call-centre agents read numbers back: 1 is 幺 (yāo), never confused with 七.
DIGIT_READINGS = dict(zip("0123456789", "零幺二三四五六七八九", strict=True))
LOCK_STRIPES = 64
# A piece of speech ends at a clause or sentence mark; one shorter than MIN_PIECE_CHARS joins the next
# (「好的，请稍等。」 stays whole). Enumerations (、) are not cut: each piece is read with a final intonation.
_CLAUSE = re.compile(
    r"[^，,：:；;。！？!?\n]+[，,：:；;。！？!?\n”」\s]*|[，,：:；;。！？!?\n”」\s]+"
)
_MARKS = "，,：:；;。！？!?“”「」 \n"
MIN_PIECE_CHARS = 6
# A first piece longer than LEAD_MAX_CHARS is spoken in two: its leading phrase (at least LEAD_MIN_CHARS), then
# the rest. Kokoro takes ~250 ms plus ~50 ms per character on one core: a clause of 16 characters, ~1 s.
LEAD_MAX_CHARS = 8
LEAD_MIN_CHARS = 4
# jieba part-of-speech tags (first letter): a conjunction, preposition or adverb opens a new phrase (「｜可以在…」);
# a word with such a tag, or a pronoun or particle, binds to what follows and is never the end of a phrase.
_PHRASE_OPENERS = frozenset("cpd")
_BINDS_FORWARD = frozenset("cpdru")
_MODALS = frozenset({"可以", "应当", "应该", "需要", "必须", "能够", "可", "须"})

log = logging.getLogger(__name__)


class TtsError(HotlineError):
    """Synthesis failed. ``code`` is stable and machine-readable; ``message`` is Chinese."""


class SpeechSynthesizer(Protocol):
    """A TTS engine. ``cache_id`` names everything that changes its output (engine, voice, rate …)."""

    @property
    def cache_id(self) -> str: ...

    def synthesize(self, text: str) -> bytes:
        """``text`` as 8 kHz slin 16-bit mono."""
        ...


class EspeakNg:
    """espeak-ng (Debian ``espeak-ng``) run as a subprocess that writes WAV to stdout."""

    def __init__(
        self,
        voice: str = "cmn-latn-pinyin",
        *,
        speed_wpm: int = 150,
        timeout_s: float = 30.0,
        executable: str = "espeak-ng",
    ) -> None:
        self.voice = voice
        self.speed_wpm = speed_wpm
        self.timeout_s = timeout_s
        self.executable = executable
        self._voice_checked = False

    @property
    def cache_id(self) -> str:
        return f"espeak-ng/{self.voice}/{self.speed_wpm}"

    def synthesize(self, text: str) -> bytes:
        if not self._voice_checked:
            self._check_voice()
        # The text goes on stdin, never on the command line: it cannot be read as an option.
        # Amplitude 75 of 200 (default 100) leaves headroom: at 100 the resampled peaks clip.
        command = [
            self.executable,
            "-v",
            self.voice,
            "-s",
            str(self.speed_wpm),
            "-a",
            "75",
            "--stdout",
        ]
        wav = self._run(command, text.encode("utf-8"))
        try:
            return audio.wav_bytes_to_slin8k(wav)
        except audio.AudioFormatError as exc:
            raise TtsError("tts.engine_failed", f"espeak-ng 输出无法解析：{exc.message}") from exc

    def _run(self, command: list[str], stdin: bytes) -> bytes:
        try:
            done = subprocess.run(
                command, input=stdin, capture_output=True, timeout=self.timeout_s, check=False
            )
        except FileNotFoundError as exc:
            raise TtsError(
                "tts.engine_missing", f"未找到语音合成程序 {self.executable}（请安装 espeak-ng）"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise TtsError("tts.timeout", f"语音合成超过 {self.timeout_s:g} 秒未完成") from exc
        if done.returncode != 0 or not done.stdout:
            detail = done.stderr.decode("utf-8", "replace").strip()
            raise TtsError(
                "tts.engine_failed", f"espeak-ng 合成失败（退出码 {done.returncode}）：{detail}"
            )
        return done.stdout

    def _check_voice(self) -> None:
        """espeak-ng silently falls back to English for an unknown voice: refuse it instead."""
        listing = self._run([self.executable, "--voices"], b"").decode("utf-8", "replace")
        known = {word.lower() for line in listing.splitlines()[1:] for word in line.split()[1:5]}
        known |= {name.rsplit("/", 1)[-1] for name in known}
        known |= {alias.lower() for alias in re.findall(r"\(([\w-]+) \d+\)", listing)}  # "(zh 5)"
        if self.voice.split("+", 1)[0].lower() not in known:
            raise TtsError(
                "tts.unknown_voice",
                f"espeak-ng 没有语音 {self.voice!r}（可用：espeak-ng --voices）",
            )
        self._voice_checked = True


class CachedTts:
    """A synthesizer behind a disk cache (one raw slin file per sentence) with per-sentence single flight."""

    def __init__(self, engine: SpeechSynthesizer, cache_dir: str | Path) -> None:
        self.engine = engine
        self.cache_dir = Path(cache_dir)
        self.syntheses = 0  # engine calls made (cache misses), for metrics and tests
        # Striped locks: one text always maps to the same lock, and their number stays bounded.
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def path_for(self, text: str) -> Path:
        digest = hashlib.sha256(f"{self.engine.cache_id}\n{text}".encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.slin"

    def synthesize(self, text: str) -> bytes:
        """The text as 8 kHz slin, piece by piece (:func:`speech_pieces`): each from the cache, or synthesised
        once and stored, and joined as the bot plays them (silence around each piece trimmed)."""
        return b"".join(
            audio.trim_silence(self.synthesize_piece(piece)) for piece in speech_pieces(text)
        )

    def synthesize_piece(self, text: str) -> bytes:
        """One piece of speech as it is (never cut again), from the cache or synthesised once and stored."""
        path = self.path_for(text)
        with self._locks[int(path.stem[:8], 16) % LOCK_STRIPES]:
            if path.exists():
                return path.read_bytes()
            pcm = self.engine.synthesize(text)
            self.syntheses += 1
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: another process sharing the folder never reads half a file.
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
                tmp.write(pcm)
            os.replace(tmp.name, path)
            return pcm

    async def asynthesize(self, text: str) -> bytes:
        """``synthesize`` in a worker thread, so the event loop keeps pacing other calls' audio."""
        return await asyncio.to_thread(self.synthesize, text)

    async def asynthesize_piece(self, text: str) -> bytes:
        """``synthesize_piece`` in a worker thread."""
        return await asyncio.to_thread(self.synthesize_piece, text)


def split_sentences(text: str) -> list[str]:
    """``text`` cut into the pieces spoken one after another: clauses and sentences with their marks.

    Joined, the pieces give ``text`` back but for whitespace between them; a piece split again stays whole.
    """
    pieces: list[str] = []
    current = ""
    for clause in _CLAUSE.findall(text.strip()):
        current += clause
        if len(current.strip(_MARKS)) >= MIN_PIECE_CHARS:
            pieces.append(current.strip())
            current = ""
    rest = current.strip()
    if rest and pieces:
        pieces[-1] += rest  # a short last clause (「再见。」) ends the one before
    elif rest.strip(_MARKS):
        pieces.append(rest)
    if not pieces:
        raise TtsError("tts.empty_text", "合成文本为空")
    return pieces


def speech_pieces(text: str) -> list[str]:
    """The pieces ``text`` is spoken in: :func:`split_sentences`, with a first piece longer than
    ``LEAD_MAX_CHARS`` cut after its leading phrase (:func:`leading_phrase`) so that the caller's first audio
    needs the synthesis of a few words only. Each piece is synthesised as it is (``synthesize_piece``)."""
    first, *rest = split_sentences(text)
    lead = leading_phrase(first)
    return [lead, first[len(lead) :], *rest] if lead else [first, *rest]


def leading_phrase(piece: str) -> str:
    """The head of ``piece`` that can be said on its own, or "" when ``piece`` is short or has none.

    The head ends at a natural pause: at its first clause mark (「您好，」), else between two words (jieba) where
    a subject or a topic ends, before a conjunction, preposition, adverb or modal verb (「灵活就业人员｜可以…」).
    It is never cut inside a word, and a clause without such a boundary stays whole.
    """
    if len(piece.strip(_MARKS)) <= LEAD_MAX_CHARS:
        return ""
    if (clause := _CLAUSE.match(piece)) and len(clause.group(0).strip(_MARKS)) <= LEAD_MAX_CHARS:
        return clause.group(0) if clause.end() < len(piece) else ""
    words = pseg.lcut(piece[: LEAD_MAX_CHARS + 4], HMM=False)
    length = 0
    for before, word, after in zip(words[:-1], words[1:], [*words[2:], None], strict=True):
        length += len(before.word)
        if length > LEAD_MAX_CHARS:
            break
        if length >= LEAD_MIN_CHARS and _phrase_boundary(before, word, after):
            return piece[:length]
    return ""


def _phrase_boundary(before: pseg.pair, word: pseg.pair, after: pseg.pair | None) -> bool:
    """Whether a speaker may pause between ``before`` and ``word``: a new phrase opens with ``word``
    (not when ``word`` ends a modifier: 「出国需要的护照」)."""
    opens_phrase = word.flag[:1] in _PHRASE_OPENERS or word.word in _MODALS
    modifier = after is not None and after.word in ("的", "之")
    return opens_phrase and not modifier and before.flag[:1] not in _BINDS_FORWARD


class AsyncSynthesizer(Protocol):
    async def asynthesize_piece(self, text: str) -> bytes: ...


async def speak_sentences(tts: AsyncSynthesizer, text: str) -> AsyncGenerator[bytes, None]:
    """``text`` as slin, one piece of :func:`speech_pieces` at a time: the next piece is synthesised while
    the caller hears this one, so the first audio waits for the leading phrase only."""
    pieces = speech_pieces(text)
    upcoming = asyncio.ensure_future(tts.asynthesize_piece(pieces[0]))
    try:
        for following in [*pieces[1:], None]:
            pcm = await upcoming
            if following is not None:
                upcoming = asyncio.ensure_future(tts.asynthesize_piece(following))
            yield pcm
    finally:
        if upcoming.done() and not upcoming.cancelled():
            upcoming.exception()  # a failure of a piece never played is not reported as unretrieved
        else:
            upcoming.cancel()


def build_tts(settings: TtsSettings) -> CachedTts:
    """The configured engine behind the configured cache. Kokoro that is not installed or does not load is
    logged (once, here) and replaced by espeak-ng: the bot still speaks."""
    if settings.engine == "kokoro":
        try:
            # Imported here: onnxruntime and the G2P are loaded only when Kokoro is wanted.
            from asr.tts_kokoro import KokoroTts

            return CachedTts(KokoroTts.from_settings(settings.kokoro), settings.cache_dir)
        except (TtsError, ImportError) as exc:
            reason = exc.message if isinstance(exc, TtsError) else str(exc)
            log.warning("Kokoro 语音合成不可用，改用 espeak-ng：%s", reason)
    engine = EspeakNg(settings.voice, speed_wpm=settings.speed_wpm, timeout_s=settings.timeout_s)
    return CachedTts(engine, settings.cache_dir)


def digits_for_speech(number: str) -> str:
    """A ticket number for reading back digit by digit: ``12345-20261123-00042`` → ``幺 二 三 四 五，二 零 …``.

    Digits become 零 幺 二 … 九 separated by spaces; ``-`` and spaces become a pause (，); other characters
    (letters in a reference) are kept as they are.
    """
    groups: list[list[str]] = [[]]
    for char in number.strip():
        if char in "- ":
            if groups[-1]:
                groups.append([])
        else:
            groups[-1].append(DIGIT_READINGS.get(char, char))
    return "，".join(" ".join(group) for group in groups if group)
