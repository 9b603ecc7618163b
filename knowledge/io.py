"""Import and export of entries as CSV (UTF-8, BOM tolerated), XLSX and JSONL.

Fields: ``question`` and ``answer`` are required; ``answer`` is the shown answer (kept in full, with its
citations, links and tables) unless ``answer_text`` is given. The spoken answer is ``answer_speech`` when the
file gives one the bot can speak within the speech limit; otherwise it is derived from it, or from the answer
(:mod:`knowledge.speech`), and the entry is marked for review (自动生成，请审核). ``alt_questions`` and
``keywords`` are lists in JSONL and ``|``-separated in CSV/XLSX; ``department``, ``source``, ``valid_from``,
``valid_to`` (YYYY-MM-DD); an ``id`` must be unique in the file. Any other field is kept as metadata. A file
with any bad row (a missing question or answer, a bad date, a duplicate, a value of the wrong type) imports
nothing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import openpyxl
from sqlalchemy.ext.asyncio import AsyncSession

from knowledge import services
from knowledge.errors import ImportRejected, InvalidInput, RowProblem
from knowledge.models import KnowledgeEntry
from knowledge.retrieval import IndexedEntry
from knowledge.schemas import FIELD_NAMES, MAX_SPEECH, MAX_TEXT, EntryContent, validate_content
from knowledge.speech import derive_speech, speakable

FORMATS = (".csv", ".xlsx", ".jsonl")
LIST_FIELDS = ("alt_questions", "keywords")
TEXT_FIELDS = ("question", "answer", "answer_speech", "answer_text", "department", "source")
ID_FIELD = "id"
KNOWN = (
    "question",
    "answer",
    "answer_speech",
    "answer_text",
    "department",
    "alt_questions",
    "keywords",
    "source",
    "valid_from",
    "valid_to",
)
EXPORT_COLUMNS = (
    "question",
    "answer",
    "answer_speech",
    "department",
    "alt_questions",
    "keywords",
    "source",
    "valid_from",
    "valid_to",
)
SEPARATOR = "|"
# Longest cell of any format: four times the longest text an entry holds (answer_text), so whatever the entry
# rules accept fits (30 alternative questions joined by "|" stay near 6,000 characters), and a broken file is
# refused by row. Python's csv reader itself stops at 131,072 characters (csv.field_size_limit).
MAX_FIELD_CHARS = 4 * MAX_TEXT


@dataclass(frozen=True)
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    published: int = 0
    speech_derived: int = 0  # rows whose spoken answer was derived (to be reviewed)


@dataclass(frozen=True)
class ImportRow:
    """One row's content, and whether its spoken answer was derived rather than given."""

    content: EntryContent
    speech_derived: bool = False


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(
            "kb.bad_format", f"不支持的文件格式 {suffix or '(无扩展名)'}，请用 CSV、XLSX 或 JSONL"
        )
    return suffix


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Bad(raw[: exc.start].count(b"\n") + 1, "不是 UTF-8 编码（请另存为 UTF-8）") from None


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or sheet-row number, raw fields) of every non-empty row; a row that cannot be read is a problem."""
    fmt = _format(path)
    if fmt == ".jsonl":
        for no, line in enumerate(_decode(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _Bad(no, f"不是合法的 JSON：{exc.msg}") from None
            if not isinstance(row, dict):
                raise _Bad(no, "每行应是一个 JSON 对象")
            yield no, row
    elif fmt == ".csv":
        reader = csv.DictReader(io.StringIO(_decode(path), newline=""))
        try:
            for row in reader:
                if None in row:
                    raise _Bad(reader.line_num, "列数多于表头")
                if any((v or "").strip() for v in row.values()):
                    yield reader.line_num, {k.strip(): v for k, v in row.items() if k}
        except csv.Error:  # non-strict dialect: only a field beyond csv.field_size_limit()
            row_no = (
                reader.reader.line_num
            )  # DictReader's own line_num is still that of the last good row
            raise _Bad(row_no, f"有字段超过 {MAX_FIELD_CHARS} 字，文件可能已损坏") from None
    else:
        try:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for a broken file
            raise _Bad(1, f"无法读取 XLSX 文件：{exc}") from None
        try:
            rows = book.worksheets[0].iter_rows(values_only=True)
            header = [str(h).strip() if h is not None else "" for h in next(rows, ())]
            for no, values in enumerate(rows, start=2):
                if any(v is not None and str(v).strip() for v in values):
                    yield no, {h: v for h, v in zip(header, values, strict=False) if h}
        finally:
            book.close()


class _Bad(Exception):
    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.problem = RowProblem(row, message)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(type(value).__name__)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _list(value: Any, field: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ValueError(f"{field} 应是文字列表")
        return value
    if isinstance(value, str):
        return [v for v in value.split(SEPARATOR)]
    raise ValueError(f"{field} 应是文字列表或用 | 分隔的文字")


def _date(value: Any) -> str | date | None:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else (_text(value) or None)


def _texts(row: dict[str, Any]) -> dict[str, str]:
    """The text fields of a row; a list, an object or a true/false value there is refused, naming the field."""
    texts = {}
    for name in TEXT_FIELDS:
        try:
            texts[name] = _text(row.get(name))
        except TypeError:
            raise InvalidInput(
                "kb.invalid_entry", f"字段 {name}（{_label(name)}）应是文字"
            ) from None
    return texts


def _label(name: str) -> str:
    return FIELD_NAMES.get(name, "答案" if name == "answer" else name)


def _speech(given: str, answer: str, max_speech: int) -> tuple[str, bool]:
    """(spoken answer, derived?): the given one when the bot can speak it, else one derived from it or the answer."""
    if given and speakable(given) and len(given) <= max_speech:
        return given, False
    spoken = derive_speech(given or answer, max_speech)
    if not spoken:
        raise InvalidInput(
            "kb.invalid_entry",
            "答案中没有可朗读的内容（只有引用或网址），请填写 answer_speech（语音答案）",
        )
    return spoken, True


def content_from_row(row: dict[str, Any], *, max_speech: int = MAX_SPEECH) -> ImportRow:
    """Map one raw row onto an entry's content; raises InvalidInput with a Chinese message naming the field."""
    for name, value in row.items():
        if len(value if isinstance(value, str) else str(value)) > MAX_FIELD_CHARS:
            raise InvalidInput(
                "kb.invalid_entry", f"字段 {name} 超过 {MAX_FIELD_CHARS} 字，文件可能已损坏"
            )
    texts = _texts(row)
    answer = texts["answer"]
    if not texts["question"]:
        raise InvalidInput("kb.invalid_entry", "缺少必填字段 question（问题）")
    if not answer:
        raise InvalidInput("kb.invalid_entry", "缺少必填字段 answer（答案）")
    try:
        lists = {f: _list(row.get(f), f) for f in LIST_FIELDS}
    except ValueError as exc:
        raise InvalidInput("kb.invalid_entry", str(exc)) from None
    speech, derived = _speech(texts["answer_speech"], answer, max_speech)
    data = {
        "question": texts["question"],
        "answer_speech": speech,
        "answer_text": texts["answer_text"] or answer,
        "department": texts["department"],
        "source": texts["source"],
        "valid_from": _date(row.get("valid_from")),
        "valid_to": _date(row.get("valid_to")),
        "extra": {
            k: _jsonable(v) for k, v in row.items() if k not in KNOWN and v not in (None, "")
        },
        **lists,
    }
    return ImportRow(validate_content(data, max_speech=max_speech), derived)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def parse_file(path: Path, *, max_speech: int = MAX_SPEECH) -> list[ImportRow]:
    """Every row's content, or :class:`ImportRejected` listing every bad row."""
    if not path.is_file():
        raise InvalidInput("kb.file_not_found", f"找不到文件 {path}")
    rows: list[ImportRow] = []
    problems: list[RowProblem] = []
    questions: dict[str, int] = {}
    ids: dict[str, int] = {}
    try:
        for no, raw in read_rows(path):
            try:
                row = content_from_row(raw, max_speech=max_speech)
            except InvalidInput as exc:
                problems.append(RowProblem(no, exc.message))
                continue
            problem = _duplicate(row.content.question, questions, no, "问题") or _duplicate(
                _id_key(raw.get(ID_FIELD)), ids, no, f"编号 {ID_FIELD}"
            )
            if problem:
                problems.append(RowProblem(no, problem))
                continue
            rows.append(row)
    except _Bad as bad:
        problems.append(bad.problem)
    if problems:
        raise ImportRejected(str(path), problems)
    return rows


def _id_key(value: Any) -> str | None:
    return (
        None
        if value is None or value == ""
        else json.dumps(value, ensure_ascii=False, sort_keys=True)
    )


def _duplicate(key: str | None, seen: dict[str, int], no: int, what: str) -> str | None:
    """A message when ``key`` was seen on an earlier row; else remembers it."""
    if key is None:
        return None
    if key in seen:
        return f"{what}与第 {seen[key]} 行重复"
    seen[key] = no
    return None


async def import_file(
    session: AsyncSession,
    path: Path,
    actor: str,
    *,
    publish: bool = False,
    max_speech: int = MAX_SPEECH,
    now: datetime | None = None,
) -> ImportReport:
    """Import a file in one transaction: new questions are created, known ones updated (new version)."""
    rows = await asyncio.to_thread(parse_file, path, max_speech=max_speech)
    at = now or datetime.now(UTC)
    created = updated = unchanged = published = 0
    try:
        for row in rows:
            content, derived = row.content, row.speech_derived
            entry = await services.find_by_question(session, content.question)
            if entry is None:
                entry = await services._create(session, content, actor, at, speech_derived=derived)
                created += 1
            elif services.content_of(entry).snapshot() != content.snapshot():
                await services._update(session, entry, content, actor, at, speech_derived=derived)
                updated += 1
            else:
                unchanged += 1
            if publish and entry.status != "published":
                await services._set_status(session, entry, "published", "publish", actor, at)
                published += 1
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    return ImportReport(created, updated, unchanged, published, sum(r.speech_derived for r in rows))


def _export_row(entry: KnowledgeEntry) -> dict[str, Any]:
    row: dict[str, Any] = {
        "question": entry.question,
        "answer": entry.answer_text,
        "answer_speech": entry.answer_speech,
        "department": entry.department,
        "alt_questions": list(entry.alt_questions or []),
        "keywords": list(entry.keywords or []),
        "source": entry.source,
        "valid_from": entry.valid_from.isoformat() if entry.valid_from else "",
        "valid_to": entry.valid_to.isoformat() if entry.valid_to else "",
    }
    row.update(entry.extra or {})
    return row


def _flat(value: Any) -> Any:
    if isinstance(value, list):
        return SEPARATOR.join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value


async def export_file(session: AsyncSession, path: Path, *, status: str | None = None) -> int:
    """Write the entries (all, or those of one status) to ``path``; the format follows the extension."""
    fmt = _format(path)
    rows = [_export_row(e) for e in await services.all_entries(session, status=status)]
    await asyncio.to_thread(_write, path, fmt, rows)
    return len(rows)


def _write(path: Path, fmt: str, rows: list[dict[str, Any]]) -> None:
    columns = list(EXPORT_COLUMNS) + sorted({k for r in rows for k in r} - set(EXPORT_COLUMNS))
    if fmt == ".jsonl":
        path.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
    elif fmt == ".csv":
        with path.open("w", encoding="utf-8-sig", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows({k: _flat(r.get(k, "")) for k in columns} for r in rows)
    else:
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.title = "知识库"
        sheet.append(columns)
        for r in rows:
            sheet.append([_flat(r.get(k)) if r.get(k) not in (None, "") else None for k in columns])
        book.save(path)


def indexed_from_file(path: Path) -> list[IndexedEntry]:
    """Entries of a knowledge-base file as retrieval sees them (ids are row order), without a database."""
    contents = [row.content for row in parse_file(path, max_speech=10**6)]
    return [
        IndexedEntry(
            i,
            c.question,
            c.answer_speech,
            c.answer_text,
            c.department,
            tuple(c.alt_questions),
            tuple(c.keywords),
        )
        for i, c in enumerate(contents, start=1)
    ]
