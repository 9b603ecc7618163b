"""Errors of the knowledge base: a stable machine-readable ``code`` and a Chinese ``message``."""

from __future__ import annotations

from dataclasses import dataclass

from config.errors import HotlineError


class KnowledgeError(HotlineError):
    """Base class; ``code`` is stable for programs, ``message`` is shown to people."""


class NotFound(KnowledgeError):
    def __init__(self, entry_id: int) -> None:
        super().__init__("kb_not_found", f"知识条目 {entry_id} 不存在")


class VersionConflict(KnowledgeError):
    def __init__(self, entry_id: int, expected: int, actual: int) -> None:
        super().__init__("kb_version_conflict", f"知识条目 {entry_id} 已被他人修改"
                         f"（当前版本 {actual}，提交基于版本 {expected}），请刷新后重试")
        self.actual = actual


class IllegalStatus(KnowledgeError):
    def __init__(self, entry_id: int, status: str, action: str) -> None:
        super().__init__("kb_illegal_status", f"知识条目 {entry_id} 当前状态为“{status}”，不能{action}")


class DuplicateQuestion(KnowledgeError):
    def __init__(self, question: str) -> None:
        super().__init__("kb_duplicate_question", f"已有相同问题的知识条目：{question}")


class InvalidInput(KnowledgeError):
    """A value that breaks a rule (too long, bad date, …); ``code`` names the rule."""


@dataclass(frozen=True)
class RowProblem:
    """One bad row of an import file: ``row`` is the line (CSV/JSONL) or sheet row (XLSX) number."""

    row: int
    message: str

    def __str__(self) -> str:
        return f"第 {self.row} 行：{self.message}"


class ImportRejected(KnowledgeError):
    """The file has bad rows; nothing of it was imported."""

    def __init__(self, path: str, problems: list[RowProblem]) -> None:
        shown = "；".join(str(p) for p in problems[:20])
        more = f"；另有 {len(problems) - 20} 处错误" if len(problems) > 20 else ""
        super().__init__("kb_import_rejected", f"文件 {path} 有错误，未导入任何内容：{shown}{more}")
        self.problems = problems
