"""Text analysis for retrieval: clean what the caller said, cut it into words, read it as sounds.

Mandarin ASR confuses characters that sound alike (社保→设保, 公积金→公基金), and speakers (and
recognisers) blur some initials and finals (zh/z, ch/c, sh/s, n/l, an/ang, en/eng, in/ing). So besides
words, text is also read as toneless pinyin syllables with those pairs merged: 设保 and 社保 then sound
the same. Synonyms (社保/社会保险) are merged by word and, for terms of two or more syllables, by sound.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from itertools import pairwise

import jieba
import opencc
from pypinyin import Style, lazy_pinyin

from knowledge.lexicon import Lexicon

_HAN = re.compile(r"[\u4e00-\u9fff]")
_KEEP = re.compile(r"[\u4e00-\u9fffa-z0-9]+")
_DIGITS = re.compile(r"\d+")
_CN_DIGITS = "零一二三四五六七八九"
_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"))
_T2S = opencc.OpenCC("t2s")


@cache
def _dictionary() -> jieba.Tokenizer:
    """jieba's dictionary, loaded once per process (it takes seconds)."""
    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def _segmenter() -> jieba.Tokenizer:
    """A word segmenter of its own, so domain words added for one index never change how another segments.

    It starts from a copy of the loaded dictionary's word table (about 10 ms) instead of loading it again; the
    attributes ``FREQ``, ``total`` and ``initialized`` are those :meth:`jieba.Tokenizer.initialize` sets
    (checked against jieba 0.42.1)."""
    loaded = _dictionary()
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ, tokenizer.total = dict(loaded.FREQ), loaded.total
    tokenizer.initialized = True
    return tokenizer


def fuzzy_syllable(syllable: str) -> str:
    """Merge the pairs Mandarin speakers and recognisers confuse: zh/z ch/c sh/s n/l and -ng/-n (not -ong)."""
    for long, short in _FUZZY_INITIALS:
        if syllable.startswith(long):
            syllable = short + syllable[2:]
            break
    else:
        if syllable.startswith("n") and len(syllable) > 1:
            syllable = "l" + syllable[1:]
    if syllable.endswith("ng") and not syllable.endswith("ong") and len(syllable) > 2:
        syllable = syllable[:-1]
    return syllable


def _number_words(match: re.Match[str]) -> str:
    """Arabic numbers as they are spoken: 12 → 十二, 30 → 三十; longer ones digit by digit (2025 → 二零二五)."""
    digits = match.group(0)
    n = int(digits)
    if len(digits) > 2 or (digits.startswith("0") and len(digits) > 1):
        return "".join(_CN_DIGITS[int(d)] for d in digits)
    if n < 10:
        return _CN_DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _CN_DIGITS[tens]) + "十" + (_CN_DIGITS[ones] if ones else "")


class Analyzer:
    """Turns text into the two token streams of the index: words and fuzzy-pinyin syllable pairs."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        self._jieba = _segmenter()
        self._user_words: set[str] = set()
        self.add_words(lexicon.terms())
        self._fillers = (
            re.compile("|".join(map(re.escape, lexicon.fillers))) if lexicon.fillers else None
        )
        # synonyms by sound: fuzzy syllables of each multi-syllable term → syllables of its canonical term
        self._by_sound: dict[tuple[str, ...], tuple[str, ...]] = {}
        for term, canon in lexicon.canonical.items():
            sounds = self.syllables_of(term)
            if len(sounds) >= 2:
                self._by_sound.setdefault(sounds, self.syllables_of(canon))
        self._longest_sound = max((len(k) for k in self._by_sound), default=0)

    def add_words(self, words: Iterable[str]) -> None:
        """Teach the segmenter domain terms (keywords, synonyms) so they stay whole words."""
        for word in words:
            word = word.strip()
            if (
                len(word) >= 2
                and word not in self._user_words
                and not any(c.isspace() for c in word)
            ):
                self._jieba.add_word(word, freq=100000)
                self._user_words.add(word)

    @staticmethod
    def syllables_of(text: str) -> tuple[str, ...]:
        return tuple(
            fuzzy_syllable(s) for s in lazy_pinyin(text, style=Style.NORMAL, errors="ignore")
        )

    def clean(self, text: str) -> str:
        """Simplified, half-width, lower-case text without punctuation and filler words."""
        text = _T2S.convert(unicodedata.normalize("NFKC", text)).lower()
        text = "".join(_KEEP.findall(text))
        text = _DIGITS.sub(_number_words, text)
        return self._fillers.sub("", text) if self._fillers else text

    def words(self, text: str) -> list[str]:
        """Content words of already cleaned text, synonyms replaced by their canonical term."""
        canonical, stop = self.lexicon.canonical, self.lexicon.stopwords
        out = []
        for token in self._jieba.lcut(text, HMM=True):
            token = canonical.get(token, token)
            if token not in stop:
                out.append(token)
        return out

    def sounds(self, words: list[str]) -> list[str]:
        """Fuzzy syllables of the words, synonyms by sound replaced (``se hui bao xian``)."""
        seq: list[str] = []
        for word in words:
            if _HAN.search(word):
                seq.extend(self.syllables_of(word))
            else:
                seq.append(word)
        return self._canonical_sounds(seq)

    @staticmethod
    def pairs(seq: list[str]) -> list[str]:
        """Adjacent pairs of a syllable sequence (``se_hui``, ``hui_bao`` …)."""
        return [f"{a}_{b}" for a, b in pairwise(seq)] if len(seq) > 1 else list(seq)

    def _canonical_sounds(self, seq: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(seq):
            for n in range(min(self._longest_sound, len(seq) - i), 1, -1):
                canon = self._by_sound.get(tuple(seq[i : i + n]))
                if canon is not None:
                    out.extend(canon)
                    i += n
                    break
            else:
                out.append(seq[i])
                i += 1
        return out

    def analyse(self, text: str) -> Analysis:
        """Every token stream of raw text."""
        words = self.words(self.clean(text))
        sounds = self.sounds(words)
        return Analysis(words, sounds, self.pairs(sounds), [c for w in words for c in w])


@dataclass(frozen=True)
class Analysis:
    words: list[str]
    sounds: list[str]  # fuzzy syllables
    sound_pairs: list[str]
    chars: list[str]
