"""The learned part of smart dispatch: a text classifier over citizen messages, and its storage.

Features are TF-IDF weights of jieba words (single words and pairs) and of character 2–3-grams (robust to
words jieba splits badly); a multinomial logistic regression maps them to labels. The terms that add most
to a label's score explain a suggestion. Models are stored with joblib (a pickle: load only files this
program wrote).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Literal

import jieba
import joblib
import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from tickets.dispatch_errors import ModelFileError

jieba.setLogLevel(logging.WARNING)

MODEL_FORMAT = "hotline-dispatch/1"
LabelKind = Literal["category", "department"]

_NOT_A_WORD = re.compile(r"^[\W\d_]+$")  # punctuation, digits, blanks
_READABLE = re.compile(r"^[\u4e00-\u9fffA-Za-z]{2,}$")


def tokenize(text: str) -> list[str]:
    """jieba words of ``text`` without punctuation, numbers and blanks."""
    return [w for w in jieba.lcut(text) if not _NOT_A_WORD.match(w)]


def _pipeline(c: float) -> Pipeline:
    features = FeatureUnion([
        ("word", TfidfVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False, ngram_range=(1, 2),
                                 sublinear_tf=True)),
        ("char", TfidfVectorizer(analyzer="char", ngram_range=(2, 3), sublinear_tf=True, min_df=2)),
    ])
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
    return Pipeline([("features", features), ("model", model)])


@dataclass
class TextClassifier:
    """A fitted pipeline and the labels it predicts."""

    pipeline: Pipeline

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[str], *, c: float = 10.0) -> TextClassifier:
        if len(set(labels)) < 2:
            raise ValueError("a dispatch classifier needs at least two different labels")
        return cls(_pipeline(c).fit(list(texts), list(labels)))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(str(x) for x in self.pipeline.named_steps["model"].classes_)

    def probabilities(self, text: str) -> dict[str, float]:
        """Label → probability (they sum to 1)."""
        probs = self.pipeline.predict_proba([text])[0]
        return dict(zip(self.labels, (float(p) for p in probs), strict=True))

    @cached_property
    def _feature_names(self) -> list[str]:
        """Readable feature names: the term without its ``word__``/``char__`` prefix and without blanks."""
        names = self.pipeline.named_steps["features"].get_feature_names_out()
        return [name.split("__", 1)[1].replace(" ", "") for name in names]

    def top_terms(self, text: str, label: str, n: int = 3) -> list[str]:
        """The readable terms of ``text`` that raise ``label``'s score most, strongest first."""
        features: FeatureUnion = self.pipeline.named_steps["features"]
        model: LogisticRegression = self.pipeline.named_steps["model"]
        row = features.transform([text]).tocsr()
        index = self.labels.index(label)
        weights = model.coef_[0] * (1 if index == 1 else -1) if model.coef_.shape[0] == 1 else model.coef_[index]
        contributions = row.data * weights[row.indices]
        chosen: list[str] = []
        for k in np.argsort(-contributions):
            if contributions[k] <= 0 or len(chosen) == n:
                break
            term = self._feature_names[row.indices[k]]
            if _READABLE.match(term) and not any(term in c or c in term for c in chosen):
                chosen.append(term)
        return chosen


@dataclass(frozen=True)
class DispatchModel:
    """What ``hotline dispatch train`` stores: the classifier and what its labels mean."""

    classifier: TextClassifier
    label_kind: LabelKind  # labels are catalogue categories or departments (承办单位)
    samples: int
    trained_at: datetime


def save_model(model: DispatchModel, path: Path) -> None:
    """Write ``model`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        joblib.dump({"format": MODEL_FORMAT, "sklearn": sklearn.__version__, "model": model}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_model(path: Path) -> DispatchModel | None:
    """The stored model, or ``None`` when none has been trained yet."""
    if not path.exists():
        return None
    try:
        stored = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unpickling fault means the same to the user
        raise ModelFileError(f"派单模型文件 {path} 无法读取（{type(exc).__name__}），请重新训练") from exc
    if not isinstance(stored, dict) or stored.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"派单模型文件 {path} 格式不符，请用 hotline dispatch train 重新训练")
    if stored.get("sklearn") != sklearn.__version__:
        raise ModelFileError(f"派单模型文件 {path} 由 scikit-learn {stored.get('sklearn')} 训练，"
                             f"当前为 {sklearn.__version__}，请重新训练")
    return stored["model"]
