"""The frozen development set of issue #12 (bench/devset/) stays byte for byte as committed, and is valid:
its counts, and every label names an entry of its knowledge base or a category of the dispatch catalogue."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from knowledge.evaluation import load_eval_set
from knowledge.io import parse_file
from tickets.dispatch_catalogue import load_catalogue
from tickets.dispatch_data import read_examples

DEVSET = Path(__file__).resolve().parents[2] / "bench" / "devset"
MANIFEST = DEVSET / "MANIFEST.sha256"
# Changing the set means a new versioned set (bench/devset-v2/), never a new hash here.
MANIFEST_SHA256 = "98c2207a2065b3e2f3d0c71f8a12d8dbcefac4a18472e2632449e7310ae3a148"
UNSPEAKABLE = re.compile(r"https?://|www\.|[()（）\[\]【】{}<>]")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(name: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in (DEVSET / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def _manifest() -> dict[str, str]:
    pairs = (
        line.split(maxsplit=1)
        for line in MANIFEST.read_text(encoding="utf-8").splitlines()
        if line.strip()
    )
    return {name.strip(): digest for digest, name in pairs}


def test_manifest_is_the_frozen_one() -> None:
    assert _sha256(MANIFEST) == MANIFEST_SHA256


@pytest.mark.parametrize("name", sorted(_manifest()))
def test_every_file_is_unchanged(name: str) -> None:
    assert _sha256(DEVSET / name) == _manifest()[name], (
        f"{name} changed: the set is frozen, add a new version"
    )


def test_no_file_was_added() -> None:
    assert {p.name for p in DEVSET.iterdir()} == {*_manifest(), MANIFEST.name}


def test_knowledge_base_imports_with_citations_only_in_the_shown_answer(settings: Settings) -> None:
    entries = parse_file(
        DEVSET / "knowledge_base.jsonl", max_speech=settings.knowledge.max_speech_chars
    )
    rows = _rows("knowledge_base.jsonl")
    assert len(entries) == len(rows) >= 100
    assert all("（依据：" in r["answer"] and r["source"] for r in rows)
    assert not any(UNSPEAKABLE.search(r["answer_speech"]) for r in rows)


def test_questions_label_existing_entries_and_meet_the_counts() -> None:
    questions = {r["question"] for r in _rows("knowledge_base.jsonl")}
    items = load_eval_set(DEVSET / "knowledge_questions.jsonl")
    in_scope = [i for i in items if i.expected is not None]
    assert {i.expected for i in in_scope} <= questions
    assert len(in_scope) >= 150
    assert len({i.expected for i in in_scope}) >= 100
    assert len(items) - len(in_scope) >= 20
    assert len({i.question for i in items}) == len(items)


def test_dispatch_messages_label_catalogue_categories_forty_each(settings: Settings) -> None:
    categories = {e.name for e in load_catalogue(settings).entries}
    examples = read_examples(DEVSET / "dispatch_messages.jsonl")
    counts = Counter(e.label for e in examples)
    assert set(counts) == categories
    assert min(counts.values()) >= 40
    assert len({e.text for e in examples}) == len(examples)


def test_dispatch_messages_are_not_in_the_training_history(shared_dir: Path) -> None:
    history = [e.text for e in read_examples(shared_dir / "dispatch" / "history_sample.jsonl")]
    runs = {text[i : i + 12] for text in history for i in range(len(text) - 11)}
    copied = [
        e.text[:20]
        for e in read_examples(DEVSET / "dispatch_messages.jsonl")
        if any(e.text[i : i + 12] in runs for i in range(len(e.text) - 11))
    ]
    assert not copied
