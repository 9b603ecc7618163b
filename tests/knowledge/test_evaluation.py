"""The paraphrase set meets the targets; the figures in bench/results/knowledge.json are reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge.errors import ImportRejected
from knowledge.evaluation import (
    CharBM25Baseline,
    EvalItem,
    choose_threshold,
    evaluate,
    load_eval_set,
)
from knowledge.retrieval import IndexedEntry, KnowledgeIndex


def test_paraphrase_set_is_big_and_varied_enough(paraphrases: Path) -> None:
    items = load_eval_set(paraphrases)
    in_scope = [i for i in items if i.expected is not None]
    assert len(in_scope) >= 150
    assert len(items) - len(in_scope) >= 30
    assert sum(i.asr_error for i in in_scope) >= len(in_scope) / 3
    assert {i.split for i in items} == {"tune", "holdout"}


def test_every_expected_question_is_in_the_sample(
    paraphrases: Path, sample_entries: list[IndexedEntry]
) -> None:
    questions = {e.question for e in sample_entries}
    assert {i.expected for i in load_eval_set(paraphrases) if i.expected} <= questions


@pytest.mark.parametrize("split", ["holdout", "tune"])
def test_targets_on_each_half(split: str, paraphrases: Path, sample_index: KnowledgeIndex) -> None:
    items = [i for i in load_eval_set(paraphrases) if i.split == split]
    figures = evaluate(sample_index, items, sample_index.confidence_threshold)
    assert figures.top1 >= 0.90
    assert figures.confident_wrong <= 0.03
    assert figures.top1_asr is not None and figures.top1_asr >= 0.90
    assert figures.answered >= 0.70  # the bot still settles most in-scope questions itself


def test_retrieval_beats_plain_character_bm25_on_asr_errors(
    paraphrases: Path, sample_index: KnowledgeIndex, sample_entries: list[IndexedEntry]
) -> None:
    items = load_eval_set(paraphrases)
    ours = evaluate(sample_index, items, None)
    base = evaluate(CharBM25Baseline(sample_entries), items, None)
    assert ours.top1_asr is not None and base.top1_asr is not None
    assert ours.top1_asr > base.top1_asr
    assert ours.top3 >= base.top3


def test_shipped_threshold_is_the_one_the_tuning_splits_choose(
    paraphrases: Path,
    colloquial: Path,
    sample_index: KnowledgeIndex,
    questions_only_index: KnowledgeIndex,
) -> None:
    """The questions-alone tune split at most 1 % confident-but-wrong; the others need no stricter one at 2 %."""

    def tune(path: Path) -> list[EvalItem]:
        return [i for i in load_eval_set(path) if i.split == "tune"]

    threshold = sample_index.confidence_threshold
    chosen = choose_threshold(questions_only_index, tune(colloquial), 0.01)
    assert chosen == pytest.approx(threshold, abs=0.02)
    for path in (paraphrases, colloquial):
        assert choose_threshold(sample_index, tune(path), 0.02) <= threshold


def test_colloquial_set_covers_every_entry_and_out_of_scope(
    colloquial: Path, sample_entries: list[IndexedEntry]
) -> None:
    items = load_eval_set(colloquial)
    assert {i.expected for i in items if i.expected} == {e.question for e in sample_entries}
    assert sum(i.expected is None for i in items) >= 40
    assert {i.split for i in items} == {"tune", "holdout"}


@pytest.mark.parametrize(
    ("index_name", "top1", "answered"),
    [("sample_index", 0.95, 0.72), ("questions_only_index", 0.74, 0.44)],
)
def test_colloquial_holdout_accuracy(
    index_name: str, top1: float, answered: float, colloquial: Path, request: pytest.FixtureRequest
) -> None:
    """Bounds under the held-out figures (full sample: top-1 0.984, answered 0.758; questions alone: 0.758,
    0.468, confident-but-wrong 1.3 %); before the answer's meaning was matched and the confidence refitted they
    were 0.968 / 0.694 and 0.694 / 0.387, with 4.0 % confident-but-wrong on questions alone."""
    index: KnowledgeIndex = request.getfixturevalue(index_name)
    items = [i for i in load_eval_set(colloquial) if i.split == "holdout"]
    figures = evaluate(index, items, index.confidence_threshold)
    assert figures.top1 >= top1
    assert figures.answered >= answered
    assert figures.confident_wrong <= 0.02
    assert figures.out_of_scope_rejected == 1.0


def test_bench_results_file_matches_a_fresh_run(
    paraphrases: Path, sample_index: KnowledgeIndex
) -> None:
    saved = json.loads(
        (Path(__file__).parents[2] / "bench/results/knowledge.json").read_text(encoding="utf-8")
    )
    items = [i for i in load_eval_set(paraphrases) if i.split == "holdout"]
    fresh = evaluate(sample_index, items, sample_index.confidence_threshold)
    assert saved["retrieval"]["holdout"]["top1"] == round(fresh.top1, 4)
    assert saved["retrieval"]["holdout"]["confident_wrong"] == round(fresh.confident_wrong, 4)


def test_confident_on_out_of_scope_counts_as_wrong(sample_index: KnowledgeIndex) -> None:
    items = [EvalItem("社保卡丢了怎么补办", None)]
    assert evaluate(sample_index, items, 0.0).confident_wrong == 1.0
    assert evaluate(sample_index, items, 1.01).confident_wrong == 0.0


def test_bad_eval_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text('{"question": "a", "expected": null}\n{"question": "b"}\n', encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        load_eval_set(path)
    assert err.value.problems[0].row == 2


def test_a_clarifying_question_resolves_many_held_out_questions_not_answered_outright(
    colloquial: Path, questions_only_index: KnowledgeIndex
) -> None:
    """Held-out colloquial split, the sample's questions alone (as a knowledge base written from statutes): the
    right entry answered outright 46.8 %, or named in the bot's 「您是想问……，还是……？」 29.0 % more (75.8 % in
    all); 4.8 % are asked with neither entry right, no out-of-scope question is asked."""
    items = [i for i in load_eval_set(colloquial) if i.split == "holdout"]
    answers = [(i.expected, questions_only_index.ask(i.question)) for i in items]
    in_scope = [(e, a) for e, a in answers if e is not None]
    named = [
        (e, (a.question, a.alternatives[0].entry.question)) for e, a in in_scope if a.clarifies
    ]
    outright = sum(a.confident and a.question == e for e, a in in_scope)
    resolved = sum(e in pair for e, pair in named)
    assert (outright + resolved) / len(in_scope) >= 0.72
    assert (len(named) - resolved) / len(in_scope) <= 0.07
    assert not any(a.clarifies or a.confident for e, a in answers if e is None)
