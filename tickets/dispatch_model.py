"""The learned part of smart dispatch: a text classifier over citizen messages, and its storage.

Features are TF-IDF weights of jieba words (single words and pairs) and of character 2–3-grams (robust to
words jieba splits badly); a linear support-vector machine, calibrated to probabilities by 3-fold
cross-validation, maps them to labels (on the shared history it beat logistic regression by about five points
top-1 and trains several times faster). The terms that add most to a label's score explain a suggestion.
Models are stored with joblib (a pickle: load only files this program wrote).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

import jieba
import joblib
import numpy as np
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from tickets.dispatch_errors import ModelFileError

jieba.setLogLevel(logging.WARNING)

MODEL_FORMAT = "hotline-dispatch/2"
LabelKind = Literal["category", "department"]
CALIBRATION_FOLDS = 3
MIN_EXAMPLES_PER_LABEL = CALIBRATION_FOLDS  # calibration needs each label in every fold

_NOT_A_WORD = re.compile(r"^[\W\d_]+$")  # punctuation, digits, blanks
_READABLE = re.compile(r"^[\u4e00-\u9fffA-Za-z]{2,}$")
# Function words and letter formulas that never explain a dispatch (虚词、信件套话).
_EXPLAIN_STOPWORDS = frozenset(
    "我们 你们 他们 她们 自己 这个 那个 这些 那些 什么 怎么 为什么 为何 没有 可以 希望 请问 问题 现在 已经 "
    "这样 因为 所以 但是 而且 如果 还是 就是 一个 一些 情况 领导 相关 部门 进行 要求 反映 你好 您好 尊敬 市长 "
    "谢谢 目前 以及 还有 时候 非常 应该 能否 是否 如何 不是 不能 一直 今年 去年 关于 我市 本人".split()
)


@lru_cache(maxsize=4096)
def tokenize(text: str) -> tuple[str, ...]:
    """jieba words of ``text`` without punctuation, numbers and blanks (cached: training, evaluation and
    explanation see the same texts again)."""
    return tuple(w for w in jieba.lcut(text) if not _NOT_A_WORD.match(w))


def _pipeline(c: float) -> Pipeline:
    features = FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    tokenizer=tokenize,
                    token_pattern=None,
                    lowercase=False,
                    ngram_range=(1, 2),
                    sublinear_tf=True,
                ),
            ),
            (
                "char",
                TfidfVectorizer(analyzer="char", ngram_range=(2, 3), sublinear_tf=True, min_df=2),
            ),
        ]
    )
    model = CalibratedClassifierCV(LinearSVC(C=c), cv=CALIBRATION_FOLDS)
    return Pipeline([("features", features), ("model", model)])


def balanced_weights(labels: Sequence[str]) -> np.ndarray:
    """Per example ``n / (labels · count of its label)``: every label weighs the same in total."""
    counts = Counter(labels)
    return np.array([len(labels) / (len(counts) * counts[y]) for y in labels])


@dataclass
class TextClassifier:
    """A fitted pipeline and the labels it predicts."""

    pipeline: Pipeline

    @classmethod
    def fit(
        cls, texts: Sequence[str], labels: Sequence[str], *, c: float = 0.5, balanced: bool = True
    ) -> TextClassifier:
        """Fit on ``texts``; at least two labels, each with ``MIN_EXAMPLES_PER_LABEL`` examples. ``balanced``
        weighs every label equally in both the classifier and its calibration, so a rare label is still
        suggested."""
        weights = balanced_weights(labels) if balanced else None
        return cls(_pipeline(c).fit(list(texts), list(labels), model__sample_weight=weights))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(str(x) for x in self.pipeline.named_steps["model"].classes_)

    def probabilities(self, text: str) -> dict[str, float]:
        """Label → probability (they sum to 1)."""
        probs = self.pipeline.predict_proba([text])[0]
        return dict(zip(self.labels, (float(p) for p in probs), strict=True))

    @cached_property
    def _explaining_terms(self) -> list[str | None]:
        """Per feature: its word if it is a single readable jieba word that can explain a label, else None."""
        names = self.pipeline.named_steps["features"].get_feature_names_out()
        out: list[str | None] = []
        for name in names:
            part, term = name.split("__", 1)
            ok = part == "word" and _READABLE.match(term) and term not in _EXPLAIN_STOPWORDS
            out.append(term if ok else None)
        return out

    def top_terms(self, text: str, label: str, n: int = 3) -> list[str]:
        """The readable terms of ``text`` that raise ``label``'s score most, strongest first."""
        features: FeatureUnion = self.pipeline.named_steps["features"]
        model: CalibratedClassifierCV = self.pipeline.named_steps["model"]
        row = features.transform([text]).tocsr()
        index = self.labels.index(label)
        coef = np.mean([c.estimator.coef_ for c in model.calibrated_classifiers_], axis=0)
        weights = coef[0] * (1 if index == 1 else -1) if coef.shape[0] == 1 else coef[index]
        contributions = row.data * weights[row.indices]
        chosen: list[str] = []
        for k in np.argsort(-contributions):
            if contributions[k] <= 0 or len(chosen) == n:
                break
            term = self._explaining_terms[row.indices[k]]
            if term is not None and term not in chosen:
                chosen.append(term)
        return chosen


@dataclass(frozen=True)
class DispatchModel:
    """What ``hotline dispatch train`` stores: the classifier and what its labels mean."""

    classifier: TextClassifier
    label_kind: LabelKind  # labels are catalogue categories or departments (承办单位)
    categories: dict[str, tuple[str, ...]]  # classifier label → the catalogue categories it means
    samples: int
    trained_at: datetime


def save_model(model: DispatchModel, path: Path) -> None:
    """Write ``model`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        joblib.dump(
            {"format": MODEL_FORMAT, "sklearn": sklearn.__version__, "model": model},
            tmp,
            compress=3,
        )
        os.chmod(tmp, 0o644)
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
    except Exception as exc:  # any unpickling fault means the same to the user
        raise ModelFileError(
            f"派单模型文件 {path} 无法读取（{type(exc).__name__}），请重新训练"
        ) from exc
    if not isinstance(stored, dict) or stored.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"派单模型文件 {path} 格式不符，请用 hotline dispatch train 重新训练")
    if stored.get("sklearn") != sklearn.__version__:
        raise ModelFileError(
            f"派单模型文件 {path} 由 scikit-learn {stored.get('sklearn')} 训练，"
            f"当前为 {sklearn.__version__}，请重新训练"
        )
    return stored["model"]
