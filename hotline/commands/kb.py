"""`hotline kb import|export|ask|eval|misses`: the knowledge base (知识库)."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from config import Settings
from hotline.commands import loading

if TYPE_CHECKING:
    from knowledge.retrieval import KnowledgeIndex


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("kb", help="知识库：导入、导出、问答、评测 (knowledge base)")
    cmds = p.add_subparsers(dest="kb_command", required=True)
    imp = cmds.add_parser("import", help="import a CSV / XLSX / JSONL file (all rows or nothing)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--publish", action="store_true", help="publish the imported entries")
    imp.add_argument("--actor", default="cli", help="who imports (recorded in the history)")
    imp.set_defaults(handler=_run(_import))
    exp = cmds.add_parser("export", help="export entries; the format follows the extension")
    exp.add_argument("file", type=Path)
    exp.add_argument("--status", choices=("draft", "published", "archived"))
    exp.set_defaults(handler=_run(_export))
    ask = cmds.add_parser("ask", help="answer a question as the speech bot would")
    ask.add_argument("text")
    ask.add_argument("--json", action="store_true")
    ask.add_argument(
        "--kb", type=Path, help="answer from this knowledge-base file instead of the database"
    )
    ask.set_defaults(handler=_run(_ask))
    ev = cmds.add_parser("eval", help="accuracy on a JSONL set of caller phrasings")
    ev.add_argument("file", type=Path)
    ev.add_argument("--json", action="store_true")
    ev.add_argument(
        "--kb", type=Path, help="evaluate against this knowledge-base file instead of the database"
    )
    ev.add_argument(
        "--out", type=Path, help="also write the full figures (baseline, timing) to this JSON file"
    )
    ev.set_defaults(handler=_run(_eval))
    mis = cmds.add_parser("misses", help="questions the bot failed on, newest first")
    mis.add_argument("--limit", type=int, default=50)
    mis.add_argument(
        "--groups",
        action="store_true",
        help="the unhandled ones grouped by similarity, the largest group first",
    )
    mis.set_defaults(handler=_run(_misses))


def _run(fn):  # type: ignore[no-untyped-def]
    return lambda settings, args: asyncio.run(fn(settings, args))


async def _index(settings: Settings, kb: Path | None) -> KnowledgeIndex:
    from hotline.runtime import in_session
    from knowledge import services
    from knowledge.io import indexed_from_file
    from knowledge.retrieval import KnowledgeIndex

    loading("知识库检索")
    if kb is not None:
        return KnowledgeIndex.from_settings(settings, indexed_from_file(kb))
    index = KnowledgeIndex.from_settings(settings)
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    await in_session(settings, lambda s: services.refresh_index(s, index, today))
    return index


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.runtime import in_session
    from knowledge.io import import_file

    report = await in_session(
        settings,
        lambda s: import_file(
            s,
            args.file,
            args.actor,
            publish=args.publish,
            max_speech=settings.knowledge.max_speech_chars,
        ),
    )
    print(
        f"新增 {report.created} 条，更新 {report.updated} 条，未变 {report.unchanged} 条，发布 {report.published} 条"
    )
    if report.speech_derived:
        print(
            f"其中 {report.speech_derived} 条的语音答案为自动生成（去掉引用和网址、数字读法、精简），请在控制台审核"
        )
    return 0


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.runtime import in_session
    from knowledge.io import export_file

    n = await in_session(settings, lambda s: export_file(s, args.file, status=args.status))
    print(f"已导出 {n} 条到 {args.file}")
    return 0


async def _ask(settings: Settings, args: argparse.Namespace) -> int:
    answer = (await _index(settings, args.kb)).ask(args.text)
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
    elif answer.answer_id is None:
        print("（知识库中没有找到答案）")
    else:
        mark = "" if answer.confident else "（置信度不足，机器人不会直接作答）"
        print(
            f"{answer.question}  [{answer.department}] 得分 {answer.score:.3f}{mark}\n{answer.answer}"
        )
    return 0


async def _eval(settings: Settings, args: argparse.Namespace) -> int:
    from knowledge import bench
    from knowledge.evaluation import evaluate_splits, figures_json, load_eval_set
    from knowledge.io import indexed_from_file

    items = load_eval_set(args.file)
    index = await _index(settings, args.kb)
    figures = figures_json(evaluate_splits(index, items, index.confidence_threshold))
    if args.out:
        entries = indexed_from_file(args.kb) if args.kb else index.entries()
        full = bench.run(index, entries, items)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(full, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(figures, ensure_ascii=False, indent=2))
    else:
        for name, f in figures.items():
            print(
                f"{name}: {f['in_scope']} 条知识库内、{f['out_of_scope']} 条知识库外；top-1 {f['top1']:.1%}，"
                f"top-3 {f['top3']:.1%}，自信但答错 {f['confident_wrong']:.1%}，直接答对 {f['answered']:.1%}"
            )
    return 0


async def _misses(settings: Settings, args: argparse.Namespace) -> int:
    from hotline.runtime import in_session
    from knowledge import services

    if args.groups:
        return await _miss_groups(settings, args.limit)
    misses = await in_session(settings, lambda s: services.list_misses(s, limit=args.limit))
    for m in misses:
        print(
            f"{m.at:%Y-%m-%d %H:%M} {m.reason:15s} {m.score if m.score is not None else '-':>6} {m.question_text}"
        )
    return 0


async def _miss_groups(settings: Settings, limit: int) -> int:
    from hotline.runtime import in_session
    from knowledge import services
    from knowledge.miss_groups import MissGrouper

    misses = await in_session(
        settings, lambda s: services.list_misses(s, handled=False, limit=limit)
    )
    for group in MissGrouper.from_settings(settings).group(misses):
        best = f"#{group.best_entry_id}" if group.best_entry_id else "-"
        print(f"{group.count:4d} 次  最接近 {best:>6}  {' / '.join(group.examples)}")
    return 0
