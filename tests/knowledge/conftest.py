"""Fixtures of the knowledge-base tests: the shipped lexicon, sample knowledge base and paraphrase set."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from config import Settings
from config.settings import config_path
from knowledge.io import indexed_from_file
from knowledge.lexicon import Lexicon, lexicon_from_settings
from knowledge.retrieval import IndexedEntry, KnowledgeIndex

DATA = Path(__file__).with_name("data")


@pytest.fixture(scope="session")
def lexicon(settings: Settings) -> Lexicon:
    return lexicon_from_settings(settings)


@pytest.fixture(scope="session")
def sample_entries(settings: Settings) -> list[IndexedEntry]:
    return indexed_from_file(config_path(settings.knowledge.sample))


@pytest.fixture(scope="session")
def sample_index(settings: Settings, sample_entries: list[IndexedEntry]) -> KnowledgeIndex:
    return KnowledgeIndex.from_settings(settings, sample_entries)


@pytest.fixture
def paraphrases() -> Path:
    return DATA / "paraphrases.jsonl"


@pytest.fixture
def colloquial() -> Path:
    """Phone-style questions (fillers, family situations, a story first, dialect words) and out-of-scope ones."""
    return DATA / "colloquial.jsonl"


@pytest.fixture(scope="session")
def questions_only_index(settings: Settings, sample_index: KnowledgeIndex) -> KnowledgeIndex:
    """The sample knowledge base with its questions alone, as one written from statutes (no alternatives)."""
    entries = [replace(e, alt_questions=(), keywords=()) for e in sample_index.entries()]
    return KnowledgeIndex.from_settings(settings, entries, previous=sample_index)
