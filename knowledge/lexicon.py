"""The retrieval lexicon (检索词表): synonym groups, filler words and stop words, read from a TOML file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import Settings
from config.settings import config_path
from knowledge.errors import InvalidInput


@dataclass(frozen=True)
class Lexicon:
    """``canonical`` maps every synonym (同义词) to the first term of its group."""

    canonical: dict[str, str] = field(default_factory=dict)
    fillers: tuple[str, ...] = ()
    stopwords: frozenset[str] = frozenset()

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Lexicon:
        canonical: dict[str, str] = {}
        for group in data.get("groups", []) or []:
            if (
                not isinstance(group, list)
                or not group
                or not all(isinstance(t, str) and t for t in group)
            ):
                raise InvalidInput("kb.bad_lexicon", f"同义词组格式错误：{group!r}")
            for term in group:
                canonical[term] = group[0]
        fillers = tuple(sorted(set(data.get("fillers", []) or []), key=len, reverse=True))
        return cls(canonical, fillers, frozenset(data.get("stopwords", []) or []))

    def terms(self) -> set[str]:
        """Every synonym term (for the word segmenter's dictionary)."""
        return set(self.canonical)


def load_lexicon(path: Path) -> Lexicon:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput("kb.bad_lexicon", f"无法读取检索词表 {path}：{exc}") from exc
    return Lexicon.from_data(data)


def lexicon_from_settings(settings: Settings) -> Lexicon:
    name = Path(settings.knowledge.synonyms)
    return load_lexicon(name if name.is_absolute() else config_path(str(name)))
