"""Errors of the knowledge base: a stable machine-readable ``code`` and a Chinese ``message``."""

from __future__ import annotations

from dataclasses import dataclass

from config.errors import HotlineError


class KnowledgeError(HotlineError):
    """Base class; ``code`` (``kb.*``) is stable for programs, ``message`` is shown to people. A subclass with one
    reason names its ``code``."""

    code = "kb.error"


class NotFound(KnowledgeError):
    code = "kb.not_found"

    def __init__(self, entry_id: int) -> None:
        super().__init__(type(self).code, f"知识条目 {entry_id} 不存在")


class MissNotFound(NotFound):
    code = "kb.miss_not_found"

    def __init__(self, miss_ids: list[int]) -> None:
        KnowledgeError.__init__(
            self, type(self).code, f"未解决问题 {'、'.join(map(str, miss_ids))} 不存在或已处理"
        )


class VersionConflict(KnowledgeError):
    code = "kb.version_conflict"

    def __init__(self, entry_id: int, expected: int, actual: int) -> None:
        super().__init__(
            type(self).code,
            f"知识条目 {entry_id} 已被他人修改"
            f"（当前版本 {actual}，提交基于版本 {expected}），请刷新后重试",
        )
        self.actual = actual


class IllegalStatus(KnowledgeError):
    code = "kb.illegal_status"

    def __init__(self, entry_id: int, status: str, action: str) -> None:
        super().__init__(type(self).code, f"知识条目 {entry_id} 当前状态为“{status}”，不能{action}")


class DuplicateQuestion(KnowledgeError):
    code = "kb.duplicate_question"

    def __init__(self, question: str) -> None:
        super().__init__(type(self).code, f"已有相同问题的知识条目：{question}")


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

    code = "kb.import_rejected"

    def __init__(self, path: str, problems: list[RowProblem]) -> None:
        shown = "；".join(str(p) for p in problems[:20])
        more = f"；另有 {len(problems) - 20} 处错误" if len(problems) > 20 else ""
        super().__init__(type(self).code, f"文件 {path} 有错误，未导入任何内容：{shown}{more}")
        self.problems = problems
