"""Kokoro-82M (v1.0, int8 ONNX), the bot's neural Mandarin voice.

Text → numbers in spoken form (``knowledge.speech.spoken_numbers``: telephone numbers digit by digit with 幺)
→ jieba words → pinyin with the third-tone change inside a word (可以 kéyǐ; pypinyin ``tone_sandhi``, which
misaki's plain Chinese reading leaves out) → IPA with tone arrows (misaki's ``ZHG2P.py2ipa``: the phonemes
Kokoro v1.0 was trained on) → onnxruntime → 24 kHz float audio → 8 kHz slin. The model, the voice and the
vocabulary are installed in ``[tts.kokoro] model_dir`` by ``hotline asr install-model``; one engine is loaded
per process and serves every call's worker thread.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import jieba
import numpy as np
import onnxruntime as ort
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
            # Odd runs are Chinese characters; the rest (punctuation, Latin letters) is passed as it is.
            spoken = "".join(_han_phonemes(run) if i % 2 else run for i, run in enumerate(runs))
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


def _han_phonemes(run: str) -> str:
    """Chinese characters as IPA, words separated by a space."""
    words = jieba.lcut(run)
    syllables = iter(
        lazy_pinyin(words, style=Style.TONE3, neutral_tone_with_five=True, tone_sandhi=True)
    )
    return " ".join("".join(ZHG2P.py2ipa(next(syllables)) for _ in word) for word in words)
