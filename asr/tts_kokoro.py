"""Kokoro-82M (v1.0, int8 ONNX), the bot's neural Mandarin voice.

Text → numbers in spoken form (``knowledge.speech.spoken_numbers``: telephone numbers digit by digit with 幺)
→ jieba words with their parts of speech → pinyin with the tone changes of speech (:func:`pinyin_words`: 一, 不,
third tones, neutral particles; misaki's plain Chinese reading leaves them out) → IPA with tone arrows
(misaki's ``ZHG2P.py2ipa``: the phonemes Kokoro v1.0 was trained on) → onnxruntime → 24 kHz float audio → 8 kHz
slin. The model, the voice and the vocabulary are installed in ``[tts.kokoro] model_dir`` by ``hotline asr
install-model``; one engine is loaded per process and serves every call's worker thread.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import jieba.posseg as pseg
import numpy as np
import onnxruntime as ort
from misaki.tone_sandhi import ToneSandhi
from misaki.zh import ZHG2P
from pypinyin import Style, lazy_pinyin

from asr import audio
from asr.model_install import KOKORO_MODEL
from asr.tts import TtsError
from config.settings import KokoroSettings
from knowledge.speech import spoken_numbers

SAMPLE_RATE = 24000
STYLE_DIM = 256
# The voices hold one style vector per phoneme count up to this; longer input is synthesised in chunks.
MAX_TOKENS = 510
_HAN = re.compile(r"([\u4e00-\u9fff]+)")
_SANDHI = ToneSandhi()
# Latin letters are spelt, as callers say them (ETC, App, 5G): English letter names in Kokoro's phonemes.
_LATIN = re.compile(r"[A-Za-z]+")
_LETTER_NAMES = dict(
    zip(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "ˈA bˈi sˈi dˈi ˈi ˈɛf ʤˈi ˈAʧ ˈI ʤˈA kˈA ˈɛl ˈɛm ˈɛn ˈO pˈi kjˈu ˈɑɹ ˈɛs tˈi jˈu vˈi "
        "dˈʌbᵊlju ˈɛks wˈI zˈi".split(),
        strict=True,
    )
)
_DIGIT_NEIGHBOUR = re.compile("[零〇幺二三四五六七八九]")
# Words pypinyin reads in their other pronunciation (from misaki's Mandarin front end, after PaddleSpeech).
_READINGS = {
    "为准": ["wei2", "zhun3"],
    "还款": ["huan2", "kuan3"],
    "借还款": ["jie4", "huan2", "kuan3"],
    "各地": ["ge4", "di4"],
}


class KokoroTts:
    """A :class:`asr.tts.SpeechSynthesizer` on Kokoro-82M; thread-safe."""

    def __init__(
        self, model_dir: Path, voice: str, *, speed: float = 1.0, threads: int = 1
    ) -> None:
        """Load the model, the voice and the G2P now: :class:`TtsError` when something is missing or broken."""
        self.voice = voice
        self.speed = speed
        paths = [
            model_dir / KOKORO_MODEL,
            model_dir / "voices" / f"{voice}.bin",
            model_dir / "vocab.json",
        ]
        if missing := [str(p) for p in paths if not p.is_file()]:
            raise TtsError(
                "tts.model_missing",
                f"未找到 Kokoro 语音合成文件：{'、'.join(missing)}（请运行 hotline asr install-model）",
            )
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(
                str(paths[0]), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._styles = np.fromfile(paths[1], dtype="<f4").reshape(-1, 1, STYLE_DIM)
            self._vocab: dict[str, int] = json.loads(paths[2].read_text(encoding="utf-8"))["vocab"]
        except Exception as exc:  # onnxruntime and numpy raise many kinds for a damaged file
            raise TtsError("tts.model_unloadable", f"Kokoro 语音合成模型无法加载：{exc}") from exc
        self._g2p_lock = threading.Lock()  # jieba's and pypinyin's dictionaries load on first use

    @classmethod
    def from_settings(cls, settings: KokoroSettings) -> KokoroTts:
        return cls(
            Path(settings.model_dir), settings.voice, speed=settings.speed, threads=settings.threads
        )

    @property
    def cache_id(self) -> str:
        return f"kokoro-v1.0-int8/{self.voice}/{self.speed:g}"

    def phonemes(self, text: str) -> str:
        """The phoneme string the model reads for ``text`` (numbers first put in spoken form)."""
        runs = _HAN.split(ZHG2P.map_punctuation(spoken_numbers(text)))
        with self._g2p_lock:
            # Odd runs are Chinese characters; the rest is punctuation and Latin letters.
            spoken = "".join(
                _han_phonemes(run) if i % 2 else _LATIN.sub(_letter_names, run)
                for i, run in enumerate(runs)
            )
        return spoken.replace("\u032f", "")  # misaki drops the non-syllabic mark too

    def synthesize(self, text: str) -> bytes:
        tokens = [self._vocab[c] for c in self.phonemes(text) if c in self._vocab]
        chunks = [tokens[i : i + MAX_TOKENS] for i in range(0, len(tokens), MAX_TOKENS)]
        samples = [self._infer(chunk) for chunk in chunks]
        if not samples:
            return b""  # nothing speakable (punctuation alone)
        return audio.to_slin8k(np.concatenate(samples), SAMPLE_RATE)

    def _infer(self, tokens: list[int]) -> np.ndarray:
        outputs = self._session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": self._styles[len(tokens) - 1],
                "speed": np.array([self.speed], dtype=np.float32),
            },
        )
        return np.asarray(outputs[0], dtype=np.float32).ravel()


def _letter_names(letters: re.Match[str]) -> str:
    """A run of Latin letters spelt letter by letter (the model would read them as phoneme symbols)."""
    return f" {' '.join(_LETTER_NAMES[c] for c in letters.group(0).upper())} "


def _han_phonemes(run: str) -> str:
    """Chinese characters as IPA, words separated by a space."""
    return " ".join(
        "".join(ZHG2P.py2ipa(syllable) for syllable in syllables) for syllables in pinyin_words(run)
    )


def pinyin_words(run: str) -> list[list[str]]:
    """The syllables (pinyin, tone number; 5 = neutral) of each word of a run of Chinese characters, as said.

    Words and their parts of speech come from jieba; the tones change as in speech (misaki's ``ToneSandhi``,
    from PaddleSpeech): 一 and 不 before a fourth tone (一样 yíyàng, 不是 búshì), 看一看, a third tone before
    another, also across two short words (我也很好 wó yě hén hǎo), neutral particles and suffixes (的, 们, 子).
    A few words pypinyin reads in their other pronunciation are read as ``_READINGS`` gives them.
    """
    pairs = [(pair.word, pair.flag) for pair in pseg.lcut(run)]
    spoken: list[list[str]] = []
    start = 0
    for word, tag in _SANDHI.pre_merge_for_modify(pairs):
        said = _word_syllables(word, tag)
        for i in range(start, start + len(word)):
            if run[i] == "一" and _DIGIT_NEIGHBOUR.search(run[max(i - 1, 0) : i + 2]):
                said[i - start] = "yi1"  # a digit (一九九八年, 二零二一年) keeps its first tone
        # a one-syllable word before a third tone changes too: 以井号 yǐ → yí
        if spoken and len(spoken[-1]) == 1 and spoken[-1][0][-1] == "3" and said[0][-1] == "3":
            spoken[-1] = [spoken[-1][0][:-1] + "2"]
        spoken.append(said)
        start += len(word)
    return spoken


def _word_syllables(word: str, tag: str) -> list[str]:
    """One word's syllables with the tone changes inside it."""
    if word in ("地", "得") and tag.startswith("u"):
        return ["de5"]  # the particle: 慢慢地 de, 跑得快 de
    read = _READINGS.get(word) or lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True)
    said = _SANDHI.modified_tone(word, tag, list(read))
    if len(word) > 1 and word[-1] in "的地得":
        said[-1] = read[-1]  # 当地 dāngdì, 目的 mùdì: only the particle itself is neutral
    return said
