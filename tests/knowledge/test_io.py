"""Import and export: good files in every format, bad files import nothing and name the row, round trips."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.cli import main
from knowledge import services
from knowledge.errors import ImportRejected
from knowledge.io import MAX_FIELD_CHARS, export_file, import_file
from knowledge.schemas import MAX_QUESTION, MAX_TEXT
from knowledge.speech import speakable

HEADER = "question,answer,department,alt_questions,keywords,source,valid_from,valid_to,priority\n"
GOOD_CSV = HEADER + (
    "身份证丢了怎么补办,带户口簿到派出所申请补领。,市公安局户政管理处,身份证丢失怎么办|身份证掉了,身份证|补领,"
    "《中华人民共和国居民身份证法》第十一条,2024-01-01,,高\n"
    "护照丢了怎么补办,带身份证到出入境大厅申请补发。,市公安局出入境管理支队,护照遗失怎么办,护照,,,,\n"
)


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    book.save(path)
    return path


def write_rows(path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    """The rows as CSV, XLSX or JSONL, after the extension (CSV and XLSX get a header row)."""
    if path.suffix == ".jsonl":
        path.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
    elif path.suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        write_xlsx(path, [[*rows[0]], *[[*r.values()] for r in rows]])
    return path


async def count(s: AsyncSession) -> int:
    return (await services.change_stamp(s))[0]


async def test_import_csv_with_bom_lists_metadata_and_publish(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
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


async def test_import_xlsx_and_jsonl(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    xlsx = write_xlsx(
        tmp_path / "kb.xlsx",
        [
            ["question", "answer", "answer_speech", "keywords", "批次"],
            [
                "低保怎么申请",
                "向乡镇街道提出书面申请（详见官网）。",
                "向乡镇街道提出书面申请。",
                "低保|最低生活保障",
                3,
            ],
        ],
    )
    jsonl = tmp_path / "kb.jsonl"
    jsonl.write_text(
        json.dumps(
            {
                "question": "失业金能领多久",
                "answer": "最长二十四个月。",
                "alt_questions": ["失业保险金领几个月"],
                "note": {"by": "人社"},
            },
            ensure_ascii=False,
        )
        + "\n\n",
        encoding="utf-8",
    )
    async with sessionmaker() as s:
        assert (await import_file(s, xlsx, "甲")).created == 1
        assert (await import_file(s, jsonl, "甲")).created == 1
        low = await services.find_by_question(s, "低保怎么申请")
        job = await services.find_by_question(s, "失业金能领多久")
    assert low is not None and job is not None
    assert low.answer_speech == "向乡镇街道提出书面申请。" and "官网" in low.answer_text
    assert (
        low.keywords == ["低保", "最低生活保障"]
        and low.extra == {"批次": 3}
        and low.status == "draft"
    )
    assert job.alt_questions == ["失业保险金领几个月"] and job.extra == {"note": {"by": "人社"}}


BAD_FILES = {
    "missing_answer.csv": ("question,answer\n护照怎么办,办护照。\n社保卡怎么办,\n", 3, "answer"),
    "too_long.csv": ("question,answer\n" + "问" * 201 + ",答\n", 2, "过长"),
    "bad_date.csv": ("question,answer,valid_from\n护照怎么办,办护照。,2024-13-45\n", 2, "日期"),
    "bad_line.jsonl": (
        '{"question": "护照怎么办", "answer": "办护照。"}\n{"question": "x", \n',
        2,
        "JSON",
    ),
    "not_object.jsonl": (
        '{"question": "护照怎么办", "answer": "办护照。"}\n["a"]\n',
        2,
        "JSON 对象",
    ),
    "duplicate.jsonl": (
        '{"question": "护照怎么办", "answer": "a"}\n{"question": "护照怎么办", "answer": "b"}\n',
        2,
        "重复",
    ),
    "duplicate_id.csv": (
        "id,question,answer\nA1,护照怎么办,办护照。\nA1,社保卡怎么办,办社保卡。\n",
        3,
        "编号 id",
    ),
    "missing_question.csv": (
        "question,answer\n护照怎么办,办护照。\n,只有答案（依据：某法）\n",
        3,
        "question",
    ),
    "answer_a_list.jsonl": (
        '{"question": "护照怎么办", "answer": ["办", "护照"]}\n',
        1,
        "answer（答案）应是文字",
    ),
    "question_an_object.jsonl": (
        '{"question": {"q": 1}, "answer": "办护照。"}\n',
        1,
        "question（问题）应是文字",
    ),
    "keywords_numbers.jsonl": (
        '{"question": "护照怎么办", "answer": "办护照。", "keywords": [1, 2]}\n',
        1,
        "keywords",
    ),
    "only_a_link.csv": ("question,answer\n护照怎么办,（依据：《护照法》）\n", 2, "answer_speech"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
async def test_bad_file_names_the_row_and_imports_nothing(
    name: str, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    text, row, words = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    async with sessionmaker() as s:
        with pytest.raises(ImportRejected) as err:
            await import_file(s, path, "甲")
        assert err.value.code == "kb.import_rejected"
        assert [p.row for p in err.value.problems] == [row]
        assert words in err.value.problems[0].message
        assert f"第 {row} 行" in err.value.message
        assert await count(s) == 0


async def test_wrong_encoding_names_the_line(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes("question,answer\nabc,def\n护照怎么办,办护照。\n".encode("gbk"))
    async with sessionmaker() as s:
        with pytest.raises(ImportRejected) as err:
            await import_file(s, path, "甲")
        assert err.value.problems[0].row == 3 and "UTF-8" in err.value.problems[0].message
        assert await count(s) == 0


async def test_bad_xlsx_row_imports_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = write_xlsx(
        tmp_path / "kb.xlsx",
        [["question", "answer"], ["护照怎么办", "办护照。"], [None, "没有问题"]],
    )
    async with sessionmaker() as s:
        with pytest.raises(ImportRejected) as err:
            await import_file(s, path, "甲")
        assert [p.row for p in err.value.problems] == [3] and "question" in err.value.problems[
            0
        ].message
        assert await count(s) == 0


async def test_bad_last_row_leaves_earlier_rows_of_the_file_unapplied(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    async with sessionmaker() as s:
        path = tmp_path / "kb.csv"
        path.write_text(GOOD_CSV, encoding="utf-8")
        await import_file(s, path, "甲", publish=True)
        stamp = await services.change_stamp(s)
        bad = tmp_path / "bad.csv"
        bad.write_text(
            "question,answer\n新问题,新答案\n护照丢了怎么补办,改过的答案\n缺答案,\n",
            encoding="utf-8",
        )
        with pytest.raises(ImportRejected):
            await import_file(s, bad, "甲")
        assert await services.change_stamp(s) == stamp
        assert await services.find_by_question(s, "新问题") is None
        entry = await services.find_by_question(s, "护照丢了怎么补办")
        assert entry is not None and entry.answer_text == "带身份证到出入境大厅申请补发。"


async def test_reimport_updates_with_a_new_version(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = tmp_path / "kb.csv"
    path.write_text(GOOD_CSV, encoding="utf-8")
    async with sessionmaker() as s:
        await import_file(s, path, "甲")
        again = await import_file(s, path, "甲")
        assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
        path.write_text(
            GOOD_CSV.replace(
                "带身份证到出入境大厅申请补发。", "本人带身份证到出入境接待大厅申请。"
            ),
            encoding="utf-8",
        )
        changed = await import_file(s, path, "乙")
        assert (changed.created, changed.updated) == (0, 1)
        entry = await services.find_by_question(s, "护照丢了怎么补办")
        assert entry is not None and entry.version == 2 and entry.updated_by == "乙"
        assert await count(s) == 2
        history = await services.entry_history(s, entry.id)
        assert history[-1].previous is not None
        assert history[-1].previous["answer_text"] == "带身份证到出入境大厅申请补发。"


@pytest.mark.parametrize("ext", [".csv", ".xlsx", ".jsonl"])
async def test_export_then_import_round_trips(
    ext: str, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    source = tmp_path / "kb.jsonl"
    source.write_text(
        "".join(
            json.dumps(r, ensure_ascii=False) + "\n"
            for r in [
                {
                    "question": "身份证丢了怎么补办",
                    "answer": "文字答案（含括号）",
                    "answer_speech": "语音答案",
                    "alt_questions": ["身份证掉了", "补身份证"],
                    "keywords": ["身份证"],
                    "department": "户政",
                    "source": "《居民身份证法》第十一条",
                    "valid_from": "2024-01-01",
                    "valid_to": "2030-12-31",
                    "批次": "A",
                },
                {"question": "护照丢了怎么补办", "answer": "补发护照。"},
            ]
        ),
        encoding="utf-8",
    )
    async with sessionmaker() as s:
        await import_file(s, source, "甲")
        before = {
            e.question: services.content_of(e).snapshot() for e in await services.all_entries(s)
        }
        exported = tmp_path / f"out{ext}"
        assert await export_file(s, exported) == 2
        assert (await import_file(s, exported, "甲")).unchanged == 2
    async with sessionmaker() as s:
        for e in await services.all_entries(s):
            await s.delete(e)
        await s.commit()
        await import_file(s, exported, "甲")
        after = {
            e.question: services.content_of(e).snapshot() for e in await services.all_entries(s)
        }
    assert after == before


async def test_history_rows_cannot_be_changed(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    from config.database import ImmutableRowError
    from knowledge.schemas import validate_content

    async with sessionmaker() as s:
        entry = await services.create_entry(
            s,
            validate_content({"question": "问", "answer_speech": "答", "answer_text": "答"}),
            "甲",
        )
        history = await services.entry_history(s, entry.id)
        history[0].actor = "篡改者"
        with pytest.raises(ImmutableRowError, match="immutable"):
            await s.flush()


@pytest.mark.parametrize("ext", [".csv", ".xlsx", ".jsonl"])
async def test_the_longest_fields_the_entry_rules_allow_are_imported(
    ext: str, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    alternatives = [f"{i:02d}" + "问" * (MAX_QUESTION - 2) for i in range(30)]
    row = {
        "question": "低保怎么申请",
        "answer": "文" * MAX_TEXT,
        "answer_speech": "向乡镇街道提出书面申请。",
        "alt_questions": "|".join(alternatives),
    }
    path = write_rows(tmp_path / f"long{ext}", [row])
    async with sessionmaker() as s:
        assert (await import_file(s, path, "甲")).created == 1
        entry = await services.find_by_question(s, "低保怎么申请")
    assert (
        entry is not None
        and len(entry.answer_text) == MAX_TEXT
        and entry.alt_questions == alternatives
    )


@pytest.mark.parametrize(
    ("ext", "size"),
    [
        (".csv", MAX_FIELD_CHARS + 1),
        (".csv", 200 * 1024),
        (".xlsx", MAX_FIELD_CHARS + 1),
        (".jsonl", 200 * 1024),
    ],
)
async def test_a_field_too_long_for_any_entry_names_the_row_and_imports_nothing(
    ext: str, size: int, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    rows = [
        {"question": "护照怎么办", "answer": "办护照。", "备注": ""},
        {"question": "社保卡怎么办", "answer": "办社保卡。", "备注": "长" * size},
    ]
    path = write_rows(tmp_path / f"huge{ext}", rows)
    row = 2 if ext == ".jsonl" else 3  # CSV and XLSX count the header row
    async with sessionmaker() as s:
        with pytest.raises(ImportRejected) as err:
            await import_file(s, path, "甲")
        assert [p.row for p in err.value.problems] == [row]
        assert f"超过 {MAX_FIELD_CHARS} 字" in err.value.problems[0].message
        assert f"第 {row} 行" in err.value.message
        assert await count(s) == 0


def test_cli_refuses_a_csv_field_beyond_the_csv_limit_by_row_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOTLINE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}")
    path = write_rows(
        tmp_path / "huge.csv",
        [
            {"question": "护照怎么办", "answer": "办护照。"},
            {"question": "社保卡怎么办", "answer": "长" * (200 * 1024)},
        ],
    )
    assert main(["kb", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "kb.import_rejected" in err and "第 3 行" in err and "未导入任何内容" in err
    assert "Traceback" not in err
    assert main(["kb", "export", str(tmp_path / "out.jsonl")]) == 0
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == ""


GOV_FAQ = Path(__file__).with_name("data") / "gov_faq.csv"


async def test_a_government_faq_with_citations_links_and_tables_imports_fully_marked_for_review(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        report = await import_file(s, GOV_FAQ, "导入员", publish=True, max_speech=120)
        assert (report.created, report.published, report.speech_derived) == (10, 10, 9)
        entries = {e.question: e for e in await services.all_entries(s)}
    for e in entries.values():
        assert speakable(e.answer_speech) and len(e.answer_speech) <= 120, e.answer_speech
        assert e.answer_speech[-1] in "。！？"
    fee = entries["办理身份证要交多少钱"]
    assert (
        "| 补领 | 40元 |" in fee.answer_text and "财政部" in fee.answer_text
    )  # the text is kept in full
    assert (
        fee.answer_speech
        == "收费标准如下：首次申领：二十元。换领：二十元。补领：四十元。临时身份证：十元。"
    )
    assert fee.speech_derived is True
    lost = entries["身份证丢了怎么补办"]
    assert (
        "https://zwfw.example.gov.cn/sfz" in lost.answer_text and "官方网站" in lost.answer_speech
    )
    compensation = entries["经济补偿金怎么计算"]
    assert len(compensation.answer_text) > 200 and compensation.answer_speech.endswith(
        "工资的经济补偿。"
    )
    given = entries[
        "失业保险金能领多久"
    ]  # a speakable spoken answer of the file is kept and not marked
    assert given.speech_derived is False and given.answer_speech.startswith("缴费满一年不足五年的")
    death = entries[
        "家里老人去世了户口怎么注销"
    ]  # the file's spoken answer has brackets: derived from it
    assert (
        death.speech_derived is True
        and death.answer_speech == "家属在一个月内带死亡证明和户口簿到派出所注销户口。"
    )
    assert entries["居民身份证的有效期是多久"].extra == {"id": "GA-001"}


async def test_a_bad_row_in_a_government_faq_names_row_and_field_and_imports_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    lines = GOV_FAQ.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    bad = tmp_path / "faq.csv"
    bad.write_text(
        "".join(lines)
        + "ZZ-1,没有答案的问题,,,市民政局,,\nZZ-2,日期不对,有答案。,,市民政局,,2024-02-30\n",
        encoding="utf-8",
    )
    async with sessionmaker() as s:
        with pytest.raises(ImportRejected) as err:
            await import_file(s, bad, "甲")
        problems = err.value.problems
        first_bad = (
            len(lines) + 1
        )  # CSV problems name the file's line (cells of the FAQ span several lines)
        assert [p.row for p in problems] == [first_bad, first_bad + 1]
        assert "answer（答案）" in problems[0].message and "生效日期" in problems[1].message
        assert await count(s) == 0


async def test_an_editors_save_clears_the_review_mark(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        await import_file(s, GOV_FAQ, "导入员")
        entry = await services.find_by_question(s, "办理身份证要交多少钱")
        assert entry is not None and entry.speech_derived
        again = await import_file(s, GOV_FAQ, "导入员")
        assert again.unchanged == 10 and entry.speech_derived  # the same file again leaves the mark
        content = services.content_of(entry)
        saved = await services.update_entry(
            s, entry.id, content, "审核员", expected_version=entry.version
        )
        assert saved.speech_derived is False
        history = await services.entry_history(s, entry.id)
        assert history[-1].previous is not None and history[-1].previous["speech_derived"] is True
