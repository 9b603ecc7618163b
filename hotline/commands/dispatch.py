"""`hotline dispatch train|suggest|eval|catalogue`: smart dispatch (智能派单) from the ticket history."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from config import Settings
from hotline.commands import loading


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dispatch", help="智能派单：训练、建议、评估 (smart dispatch)")
    cmds = p.add_subparsers(dest="dispatch_command", required=True)
    train = cmds.add_parser("train", help="从历史工单 JSONL（text, label）训练派单模型")
    train.add_argument("file", type=Path)
    train.set_defaults(handler=_train)
    suggest = cmds.add_parser("suggest", help="为一条诉求给出承办单位建议")
    suggest.add_argument("text")
    suggest.add_argument("-k", type=int, default=3, help="最多几条建议 (default 3)")
    suggest.add_argument("--district", help="只建议服务该区县的单位")
    suggest.add_argument("--json", action="store_true", help="machine-readable output")
    suggest.set_defaults(handler=_suggest)
    ev = cmds.add_parser("eval", help="在留出集与 k 折交叉验证上评估 top-1/top-3 准确率")
    ev.add_argument("file", type=Path)
    ev.add_argument("--seed", type=int, default=12345)
    ev.add_argument("--test-share", type=float, default=0.25)
    ev.add_argument("--folds", type=int, default=5)
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    ev.set_defaults(handler=_eval)
    cat = cmds.add_parser("catalogue", help="检查并列出派单目录")
    cat.add_argument("--json", action="store_true", help="machine-readable output")
    cat.set_defaults(handler=_catalogue)


def _train(settings: Settings, args: argparse.Namespace) -> int:
    from tickets.dispatch_training import train_and_store

    model = train_and_store(settings, args.file)
    labels = "、".join(model.classifier.labels)
    print(
        f"已训练派单模型：{model.samples} 条样本，{len(model.classifier.labels)} 个标签（{labels}），"
        f"保存到 {settings.dispatch.model_path}"
    )
    return 0


def _suggest(settings: Settings, args: argparse.Namespace) -> int:
    from tickets.dispatch_suggest import DispatchSuggester

    loading("派单模型")
    suggestions = DispatchSuggester.from_settings(settings).suggest(
        args.text, args.k, district=args.district
    )
    if args.json:
        _print_json({"suggestions": [s.to_json() for s in suggestions]})
        return 0
    if not suggestions:
        print("没有建议：未命中任何派单目录关键词，且没有训练好的模型")
    for n, s in enumerate(suggestions, start=1):
        e = s.entry
        print(
            f"{n}. {s.label} → {s.department}（{e.leader} {e.leader_title}；责任人 {e.person} {e.person_title}）"
            f" 得分 {s.score:.2f}\n   {s.why}"
        )
    return 0


def _eval(settings: Settings, args: argparse.Namespace) -> int:
    from language.embeddings import optional_embedder
    from tickets.dispatch_catalogue import load_catalogue
    from tickets.dispatch_data import read_examples
    from tickets.dispatch_eval import evaluate

    report = evaluate(
        read_examples(args.file),
        load_catalogue(settings),
        keyword_weight=settings.dispatch.keyword_weight,
        seed=args.seed,
        test_share=args.test_share,
        folds=args.folds,
        embedder=optional_embedder(settings.language.embedding_model),
    )
    if args.json:
        _print_json(report)
        return 0
    for part in ("holdout", "kfold"):
        print("留出集" if part == "holdout" else f"{args.folds} 折交叉验证")
        for method, acc in report[part]["methods"].items():
            print(f"  {method:14} top-1 {acc['top1']:.3f}  top-3 {acc['top3']:.3f}")
    if report["unseen"]:
        print("历史中没有的分类（每次留出一个标签训练）")
        for label, acc in report["unseen"]["labels"].items():
            print(f"  {label:14} top-1 {acc['top1']:.3f}  top-3 {acc['top3']:.3f}")
    return 0


def _catalogue(settings: Settings, args: argparse.Namespace) -> int:
    from tickets.dispatch_catalogue import catalogue_file, load_catalogue

    catalogue = load_catalogue(settings)
    if args.json:
        _print_json(
            {
                "districts": list(catalogue.districts),
                "categories": [e.model_dump(mode="json") for e in catalogue.entries],
            }
        )
        return 0
    print(f"派单目录 {catalogue_file(settings)}：{len(catalogue.entries)} 个分类")
    for e in catalogue.entries:
        areas = "、".join(e.areas) or "全市"
        history = f"；历史标签 {'、'.join(e.history_labels)}" if e.history_labels else ""
        print(
            f"  {e.name} → {e.department}（{e.leader} {e.leader_title}；{e.person} {e.person_title}；{areas}"
            f"{history}）\n    {e.description or '（缺少分类说明 description）'}"
        )
    lacking = [e.name for e in catalogue.entries if not e.description]
    if lacking:
        print(f"提示：分类“{'、'.join(lacking)}”缺少 description，历史工单中没有的分类将更难被建议")
    return 0


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))
