"""Dispatch history files (JSON Lines): one labelled citizen message per line, fields ``text`` and ``label``.

``label`` is a catalogue category or a department; every other field is ignored. Blank lines are skipped.
Any fault raises :class:`~tickets.dispatch_errors.TrainingDataError` with its line number, before anything
is trained or stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tickets.dispatch_errors import TrainingDataError


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    line: int


def read_examples(path: Path) -> list[Example]:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"无法读取历史工单文件 {path}：{exc}") from exc
    examples: list[Example] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingDataError(
                f"{path} 第 {number} 行：不是有效的 JSON（{exc.msg}）", line=number
            ) from None
        if not isinstance(record, dict):
            raise TrainingDataError(f"{path} 第 {number} 行：应为 JSON 对象", line=number)
        for field in ("text", "label"):
            value = record.get(field)
            if not isinstance(value, str) or not value.strip():
                raise TrainingDataError(
                    f"{path} 第 {number} 行：缺少字段 {field}（应为非空字符串）",
                    line=number,
                    key=field,
                )
        examples.append(
            Example(text=record["text"].strip(), label=record["label"].strip(), line=number)
        )
    if not examples:
        raise TrainingDataError(f"{path}：没有任何样本")
    return examples
