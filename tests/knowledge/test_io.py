"""Import and export: good files in every format, bad files import nothing and name the row, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from knowledge import services
from knowledge.errors import ImportRejected
from knowledge.io import export_file, import_file

HEADER = "question,answer,department,alt_questions,keywords,source,valid_from,valid_to,priority\n"
GOOD_CSV = HEADER + (
    "身份证丢了怎么补办,带户口簿到派出所申请补领。,市公安局户政管理处,身份证丢失怎么办|身份证掉了,身份证|补领,"
    "《中华人民共和国居民身份证法》第十一条,2024-01-01,,高\n"
    "护照丢了怎么补办,带身份证到出入境大厅申请补发。,市公安局出入境管理支队,护照遗失怎么办,护照,,,,\n")


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    book.save(path)
    return path


async def count(s: AsyncSession) -> int:
    return (await services.change_stamp(s))[0]


async def test_import_csv_with_bom_lists_metadata_and_publish(sessionmaker: async_sessionmaker[AsyncSession],
                                                               tmp_path: Path) -> None:
    path = tmp_path / "kb.csv"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_CSV.encode())
    async with sessionmaker() as s:
        report = await import_file(s, path, "导入员", publish=True)
        assert (report.created, report.published) == (2, 2)
        entry = await services.find_by_question(s, "身份证丢了怎么补办")
    assert entry is not None
    assert entry.alt_questions == ["身份证丢失怎么办", "身份证掉了"]
    assert entry.keywords == ["身份证", "补领"]
    assert entry.answer_speech == entry.answer_text == "带户口簿到派出所申请补领。"
    assert entry.extra == {"priority": "高"}
    assert entry.valid_from is not None and entry.valid_from.isoformat() == "2024-01-01"
    assert entry.status == "published"


async def test_import_xlsx_and_jsonl(sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    xlsx = write_xlsx(tmp_path / "kb.xlsx", [
        ["question", "answer", "answer_speech", "keywords", "批次"],
        ["低保怎么申请", "向乡镇街道提出书面申请（详见官网）。", "向乡镇街道提出书面申请。", "低保|最低生活保障", 3],
    ])
    jsonl = tmp_path / "kb.jsonl"
    jsonl.write_text(json.dumps({"question": "失业金能领多久", "answer": "最长二十四个月。",
                                 "alt_questions": ["失业保险金领几个月"], "note": {"by": "人社"}},
                                ensure_ascii=False) + "\n\n", encoding="utf-8")
    async with sessionmaker() as s:
        assert (await import_file(s, xlsx, "甲")).created == 1
        assert (await import_file(s, jsonl, "甲")).created == 1
        low = await services.find_by_question(s, "低保怎么申请")
        job = await services.find_by_question(s, "失业金能领多久")
    assert low is not None and job is not None
    assert low.answer_speech == "向乡镇街道提出书面申请。" and "官网" in low.answer_text
    assert low.keywords == ["低保", "最低生活保障"] and low.extra == {"批次": 3} and low.status == "draft"
    assert job.alt_questions == ["失业保险金领几个月"] and job.extra == {"note": {"by": "人社"}}


BAD_FILES = {
    "missing_answer.csv": ("question,answer\n护照怎么办,办护照。\n社保卡怎么办,\n", 3, "answer"),
    "too_long.csv": ("question,answer\n" + "问" * 201 + ",答\n", 2, "过长"),
    "bad_date.csv": ("question,answer,valid_from\n护照怎么办,办护照。,2024-13-45\n", 2, "日期"),
    "bad_line.jsonl": ('{"question": "护照怎么办", "answer": "办护照。"}\n{"question": "x", \n', 2, "JSON"),
    "not_object.jsonl": ('{"question": "护照怎么办", "answer": "办护照。"}\n["a"]\n', 2, "JSON 对象"),
    "duplicate.jsonl": ('{"question": "护照怎么办", "answer": "a"}\n'
                        '{"question": "护照怎么办", "answer": "b"}\n', 2, "重复"),
    "url_in_speech.csv": ("question,answer\n护照怎么办,详见 https://example.org\n", 2, "网址"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
async def test_bad_file_names_the_row_and_imports_nothing(name: str, sessionmaker: async_sessionmaker[AsyncSession],
                                                          tmp_path: Path) -> None:
    text, row, words = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    async with sessionmaker() as s:
        with pytest.raises(ImportRejected) as err:
            await import_file(s, path, "甲")
        assert err.value.code == "kb_import_rejected"
        assert [p.row for p in err.value.problems] == [row]
        assert words in err.value.problems[0].message
        assert f"第 {row} 行" in err.value.message
        assert await count(s) == 0


async def test_wrong_encoding_names_the_line(sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes("question,answer\nabc,def\n护照怎么办,办护照。\n".encode("gbk"))
    async with sessionmaker() as s:
        with pytest.raises(ImportRejected) as err:
            await import_file(s, path, "甲")
        assert err.value.problems[0].row == 3 and "UTF-8" in err.value.problems[0].message
        assert await count(s) == 0


async def test_bad_xlsx_row_imports_nothing(sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "kb.xlsx", [["question", "answer"], ["护照怎么办", "办护照。"], [None, "没有问题"]])
    async with sessionmaker() as s:
        with pytest.raises(ImportRejected) as err:
            await import_file(s, path, "甲")
        assert [p.row for p in err.value.problems] == [3] and "question" in err.value.problems[0].message
        assert await count(s) == 0


async def test_bad_last_row_leaves_earlier_rows_of_the_file_unapplied(
        sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    async with sessionmaker() as s:
        path = tmp_path / "kb.csv"
        path.write_text(GOOD_CSV, encoding="utf-8")
        await import_file(s, path, "甲", publish=True)
        stamp = await services.change_stamp(s)
        bad = tmp_path / "bad.csv"
        bad.write_text("question,answer\n新问题,新答案\n护照丢了怎么补办,改过的答案\n缺答案,\n", encoding="utf-8")
        with pytest.raises(ImportRejected):
            await import_file(s, bad, "甲")
        assert await services.change_stamp(s) == stamp
        assert await services.find_by_question(s, "新问题") is None
        entry = await services.find_by_question(s, "护照丢了怎么补办")
        assert entry is not None and entry.answer_text == "带身份证到出入境大厅申请补发。"


async def test_reimport_updates_with_a_new_version(sessionmaker: async_sessionmaker[AsyncSession],
                                                   tmp_path: Path) -> None:
    path = tmp_path / "kb.csv"
    path.write_text(GOOD_CSV, encoding="utf-8")
    async with sessionmaker() as s:
        await import_file(s, path, "甲")
        again = await import_file(s, path, "甲")
        assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
        path.write_text(GOOD_CSV.replace("带身份证到出入境大厅申请补发。", "本人带身份证到出入境接待大厅申请。"),
                        encoding="utf-8")
        changed = await import_file(s, path, "乙")
        assert (changed.created, changed.updated) == (0, 1)
        entry = await services.find_by_question(s, "护照丢了怎么补办")
        assert entry is not None and entry.version == 2 and entry.updated_by == "乙"
        assert await count(s) == 2
        history = await services.entry_history(s, entry.id)
        assert history[-1].previous is not None
        assert history[-1].previous["answer_text"] == "带身份证到出入境大厅申请补发。"


@pytest.mark.parametrize("ext", [".csv", ".xlsx", ".jsonl"])
async def test_export_then_import_round_trips(ext: str, sessionmaker: async_sessionmaker[AsyncSession],
                                              tmp_path: Path) -> None:
    source = tmp_path / "kb.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {"question": "身份证丢了怎么补办", "answer": "文字答案（含括号）", "answer_speech": "语音答案",
         "alt_questions": ["身份证掉了", "补身份证"], "keywords": ["身份证"], "department": "户政",
         "source": "《居民身份证法》第十一条", "valid_from": "2024-01-01", "valid_to": "2030-12-31", "批次": "A"},
        {"question": "护照丢了怎么补办", "answer": "补发护照。"},
    ]), encoding="utf-8")
    async with sessionmaker() as s:
        await import_file(s, source, "甲")
        before = {e.question: services.content_of(e).snapshot() for e in await services.all_entries(s)}
        exported = tmp_path / f"out{ext}"
        assert await export_file(s, exported) == 2
        assert (await import_file(s, exported, "甲")).unchanged == 2
    async with sessionmaker() as s:
        for e in await services.all_entries(s):
            await s.delete(e)
        await s.commit()
        await import_file(s, exported, "甲")
        after = {e.question: services.content_of(e).snapshot() for e in await services.all_entries(s)}
    assert after == before


async def test_history_rows_cannot_be_changed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    from knowledge.schemas import validate_content
    async with sessionmaker() as s:
        entry = await services.create_entry(s, validate_content({"question": "问", "answer_speech": "答",
                                                                  "answer_text": "答"}), "甲")
        history = await services.entry_history(s, entry.id)
        history[0].actor = "篡改者"
        with pytest.raises(PermissionError):
            await s.flush()
