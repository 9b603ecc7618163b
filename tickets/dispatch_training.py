"""Training the dispatch model from a city's ticket history, checked against the dispatch catalogue."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from config.settings import Settings
from tickets.dispatch_catalogue import Catalogue, load_catalogue
from tickets.dispatch_data import Example, read_examples
from tickets.dispatch_errors import TrainingDataError
from tickets.dispatch_model import (
    MIN_EXAMPLES_PER_LABEL,
    DispatchModel,
    LabelKind,
    TextClassifier,
    save_model,
)


def label_kind_of(examples: Sequence[Example], catalogue: Catalogue) -> LabelKind:
    """Whether the labels are catalogue categories (names or ``history_labels``) or departments; every line
    must use the same kind."""
    categories = {e.name for e in catalogue.entries} | {
        h for e in catalogue.entries for h in e.history_labels
    }
    departments = {e.department for e in catalogue.entries}
    for example in examples:
        if example.label not in categories and example.label not in departments:
            raise TrainingDataError(
                f"第 {example.line} 行：标签“{example.label}”既不是派单目录中的分类或历史标签（history_labels），"
                "也不是承办单位",
                line=example.line,
                key="label",
            )
    kind: LabelKind = (
        "category" if examples[0].label in categories else "department"
    )  # the first line decides
    allowed = categories if kind == "category" else departments
    for example in examples:
        if example.label not in allowed:
            raise TrainingDataError(
                f"第 {example.line} 行：标签“{example.label}”与前面的标签混用了分类和承办单位",
                line=example.line,
                key="label",
            )
    check_label_counts(examples, MIN_EXAMPLES_PER_LABEL)
    return kind


def check_label_counts(examples: Sequence[Example], minimum: int) -> None:
    """At least two labels, each with ``minimum`` examples."""
    counts = Counter(e.label for e in examples)
    if len(counts) < 2:
        raise TrainingDataError("历史工单至少需要两个不同的标签")
    rare = sorted(label for label, n in counts.items() if n < minimum)
    if rare:
        raise TrainingDataError(
            f"标签“{'、'.join(rare)}”的样本少于 {minimum} 条，请补充样本或合并分类", key="label"
        )


def categories_of(label: str, kind: LabelKind, catalogue: Catalogue) -> tuple[str, ...]:
    """The catalogue categories a history label means: through the catalogue's names and ``history_labels``,
    or every category a department handles."""
    if kind == "category":
        return catalogue.categories_of_history_label(label)
    return tuple(e.name for e in catalogue.entries if e.department == label)


def train_model(examples: Sequence[Example], catalogue: Catalogue) -> DispatchModel:
    """Learn the history's labels (each label weighing the same) and what they mean in the catalogue."""
    kind = label_kind_of(examples, catalogue)
    classifier = TextClassifier.fit([e.text for e in examples], [e.label for e in examples])
    categories = {label: categories_of(label, kind, catalogue) for label in classifier.labels}
    return DispatchModel(
        classifier=classifier,
        label_kind=kind,
        categories=categories,
        samples=len(examples),
        trained_at=datetime.now(UTC),
    )


def train_and_store(settings: Settings, history: Path) -> DispatchModel:
    """Train on the JSON Lines ``history`` and store at ``settings.dispatch.model_path``; a bad file stores nothing."""
    model = train_model(read_examples(history), load_catalogue(settings))
    save_model(model, Path(settings.dispatch.model_path))
    return model
