"""Smart dispatch learned from the shared ticket history: accuracy, suggestions, fallback, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from config import Settings, load_settings
from language.embeddings import optional_embedder
from tickets.dispatch_catalogue import Catalogue, load_catalogue
from tickets.dispatch_data import Example, read_examples
from tickets.dispatch_errors import ModelFileError, TrainingDataError
from tickets.dispatch_eval import evaluate
from tickets.dispatch_model import DispatchModel, load_model
from tickets.dispatch_suggest import DispatchSuggester
from tickets.dispatch_training import train_and_store, train_model

WAGES = "我们公司已经拖欠了三个月工资，老板也联系不上，请帮忙讨薪"
SCHOOL = "孩子明年上小学，请问我们小区对应哪所学校，招生政策是什么"


@pytest.fixture(scope="module")
def shipped() -> Settings:
    return load_settings(env={})


@pytest.fixture(scope="module")
def catalogue(shipped: Settings) -> Catalogue:
    return load_catalogue(shipped)


@pytest.fixture(scope="module")
def history_file(shared_dir: Path) -> Path:
    return shared_dir / "dispatch" / "history_sample.jsonl"


@pytest.fixture(scope="module")
def history(history_file: Path) -> list[Example]:
    return read_examples(history_file)


@pytest.fixture(scope="module")
def model(history: list[Example], catalogue: Catalogue) -> DispatchModel:
    return train_model(history, catalogue)


@pytest.fixture(scope="module")
def report(history: list[Example], catalogue: Catalogue, shipped: Settings) -> dict[str, Any]:
    return evaluate(
        history,
        catalogue,
        keyword_weight=shipped.dispatch.keyword_weight,
        embedder=optional_embedder(shipped.language.embedding_model),
    )  # as `hotline dispatch eval`


def model_at(settings: Settings, path: Path) -> Settings:
    return settings.model_copy(
        update={"dispatch": settings.dispatch.model_copy(update={"model_path": str(path)})}
    )


def test_held_out_accuracy_clearly_beats_the_baselines(report: dict[str, Any]) -> None:
    holdout, kfold = report["holdout"]["methods"], report["kfold"]["methods"]
    assert report["data"]["samples"] == 222 and report["holdout"]["test_samples"] >= 50
    assert holdout["suggester"]["top1"] >= 0.7 and holdout["suggester"]["top3"] >= 0.85
    assert kfold["suggester"]["top1"] >= 0.7
    for figures in (holdout, kfold):
        assert figures["suggester"]["top1"] >= 2 * figures["majority"]["top1"]
        assert figures["suggester"]["top1"] > figures["keywords_only"]["top1"]
    assert report["ratios"]["kfold_top1_vs_majority"] >= 2


def test_report_holds_figures_only_never_message_texts(
    report: dict[str, Any], history: list[Example]
) -> None:
    dumped = json.dumps(report, ensure_ascii=False)
    assert not any(e.text[:20] in dumped for e in history)


def test_suggestions_best_first_with_department_and_reasons(
    model: DispatchModel, catalogue: Catalogue
) -> None:
    suggestions = DispatchSuggester(catalogue, model, 0.3).suggest(WAGES)
    assert 1 <= len(suggestions) <= 3
    best = suggestions[0]
    assert (best.label, best.department) == ("劳动和社会保障", "市人力资源和社会保障局")
    assert "工资" in best.why and "目录关键词" in best.why
    scores = [s.score for s in suggestions]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert set(best.to_json()) == {"label", "department", "score", "why"}
    assert DispatchSuggester(catalogue, model, 0.3).suggest(SCHOOL, k=1)[0].department == "市教育局"


def test_a_keyword_hit_boosts_its_category(model: DispatchModel, catalogue: Catalogue) -> None:
    text = "化工厂晚上排放废气，气味刺鼻"  # 生态环境 is not in the history: only the catalogue knows it
    boosted = {s.label: s for s in DispatchSuggester(catalogue, model, 0.3).suggest(text)}
    assert boosted["生态环境"].department == "市生态环境局" and "废气" in boosted["生态环境"].why


def test_without_a_model_catalogue_keywords_decide_and_say_so(catalogue: Catalogue) -> None:
    keywords_only = DispatchSuggester(catalogue, None, 0.3)
    best = keywords_only.suggest("化工厂晚上排放废气")[0]
    assert (best.label, best.department) == ("生态环境", "市生态环境局")
    assert "未训练" in best.why and "废气" in best.why
    assert keywords_only.suggest("今天天气不错") == []


def test_district_filter_keeps_only_departments_serving_it(catalogue: Catalogue) -> None:
    keywords_only = DispatchSuggester(catalogue, None, 0.3)
    text = "村里宅基地被人占了"
    assert keywords_only.suggest(text, district="青山县")[0].label == "乡村振兴"
    assert keywords_only.suggest(text, district="城东区") == []


def test_missing_model_file_means_catalogue_fallback(shipped: Settings, tmp_path: Path) -> None:
    suggester = DispatchSuggester.from_settings(model_at(shipped, tmp_path / "none.joblib"))
    assert suggester.model is None
    assert "未训练" in suggester.suggest(WAGES)[0].why


def test_trained_model_is_stored_and_reloaded(
    shipped: Settings,
    history_file: Path,
    tmp_path: Path,
    model: DispatchModel,
    catalogue: Catalogue,
) -> None:
    settings = model_at(shipped, tmp_path / "sub" / "model.joblib")
    stored = train_and_store(settings, history_file)
    assert stored.samples == 222 and stored.label_kind == "category"
    reloaded = DispatchSuggester.from_settings(settings)
    assert reloaded.model is not None
    fresh = DispatchSuggester(
        catalogue, model, shipped.dispatch.keyword_weight, embedder=reloaded.prior.embedder
    )
    assert [s.to_json() for s in reloaded.suggest(WAGES)] == [
        s.to_json() for s in fresh.suggest(WAGES)
    ]


def test_department_labels_train_a_department_model(
    history: list[Example], catalogue: Catalogue
) -> None:
    as_departments = [
        Example(e.text, catalogue.by_category(e.label).department, e.line)  # type: ignore[union-attr]
        for e in history
    ]
    model = train_model(as_departments, catalogue)
    assert model.label_kind == "department"
    best = DispatchSuggester(catalogue, model, 0.3).suggest(WAGES)[0]
    assert best.label == best.department == "市人力资源和社会保障局"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("lines", "line", "fragment"),
    [
        (
            [
                '{"text": "工资拖欠", "label": "劳动和社会保障"}',
                '{"text": "学校", "label": "教育文体"}',
                '{"text": "坏',
            ],
            3,
            "JSON",
        ),
        (['{"text": "工资拖欠", "label": "劳动和社会保障"}', '{"text": "学校招生"}'], 2, "label"),
        (['{"label": "教育文体"}'], 1, "text"),
        (['["not", "an", "object"]'], 1, "对象"),
    ],
)
def test_bad_training_file_names_the_line_and_stores_nothing(
    shipped: Settings, tmp_path: Path, lines: list[str], line: int, fragment: str
) -> None:
    settings = model_at(shipped, tmp_path / "model.joblib")
    with pytest.raises(TrainingDataError) as err:
        train_and_store(settings, write(tmp_path / "bad.jsonl", lines))
    assert (
        err.value.line == line
        and f"第 {line} 行" in err.value.message
        and fragment in err.value.message
    )
    assert err.value.code == "dispatch.training_data_invalid"
    assert not (tmp_path / "model.joblib").exists()


def test_labels_must_be_known_to_the_catalogue_and_of_one_kind(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    unknown = write(
        tmp_path / "u.jsonl",
        ['{"text": "a", "label": "教育文体"}', '{"text": "b", "label": "天文"}'],
    )
    with pytest.raises(TrainingDataError, match="天文") as err:
        train_model(read_examples(unknown), catalogue)
    assert err.value.line == 2
    mixed = write(
        tmp_path / "m.jsonl",
        ['{"text": "a", "label": "教育文体"}', '{"text": "b", "label": "市公安局"}'],
    )
    with pytest.raises(TrainingDataError, match="混用") as err:
        train_model(read_examples(mixed), catalogue)
    assert err.value.line == 2


def test_too_few_examples_per_label_is_refused(catalogue: Catalogue, tmp_path: Path) -> None:
    lines = ['{"text": "学校招生", "label": "教育文体"}'] * 5 + [
        '{"text": "拖欠工资", "label": "劳动和社会保障"}'
    ]
    with pytest.raises(TrainingDataError, match="劳动和社会保障"):
        train_model(read_examples(write(tmp_path / "few.jsonl", lines)), catalogue)
    with pytest.raises(TrainingDataError, match="没有任何样本"):
        read_examples(write(tmp_path / "empty.jsonl", [""]))


def test_corrupt_model_file_is_a_clear_error_and_suggestions_fall_back(
    shipped: Settings, tmp_path: Path
) -> None:
    (tmp_path / "model.joblib").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="重新训练") as err:
        load_model(tmp_path / "model.joblib")
    assert err.value.code == "dispatch.model_unreadable"
    suggester = DispatchSuggester.from_settings(model_at(shipped, tmp_path / "model.joblib"))
    assert suggester.model is None
    assert (
        "派单模型不可用" in suggester.suggest(WAGES)[0].why
        and "重新训练" in suggester.suggest(WAGES)[0].why
    )
