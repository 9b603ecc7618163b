"""`hotline kb …` end to end: import into a database, ask with --json, eval, export."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from config import Settings
from config.settings import config_path
from hotline.cli import main


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "hotline.db"
    monkeypatch.setenv("HOTLINE_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    return db


def test_ask_json_on_an_empty_database_is_not_confident(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kb", "ask", "社保卡丢了怎么补办", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "answer_id": None,
        "question": "",
        "answer": "",
        "department": "",
        "score": 0.0,
        "confident": False,
    }


def test_import_publish_then_ask_json(
    database: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kb", "import", str(config_path(settings.knowledge.sample)), "--publish"]) == 0
    assert "新增 112 条" in capsys.readouterr().out
    assert main(["kb", "ask", "喂你好，我那个公基金想提出来，要什么条件啊", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer) - {"alternatives"} == {
        "answer_id",
        "question",
        "answer",
        "department",
        "score",
        "confident",
    }
    assert (
        "alternatives" not in answer or not answer["confident"]
    )  # the entries the bot would ask between
    assert answer["question"] == "住房公积金在什么情况下可以提取"
    assert answer["department"] == "市住房公积金管理中心"
    # (a misheard 公基金 is found first; whether it is answered outright is the confidence rule's business)
    assert 0 < answer["score"] <= 1
    assert answer["confident"] is (answer["score"] >= settings.knowledge.confidence_threshold)
    assert "http" not in answer["answer"]


def test_bad_import_exits_non_zero_and_names_the_row(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a", "answer": "b"}\nnot json\n', encoding="utf-8")
    assert main(["kb", "import", str(bad)]) == 2
    assert "第 2 行" in capsys.readouterr().err
    assert main(["kb", "export", str(tmp_path / "out.jsonl")]) == 0
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == ""


def test_eval_json_from_a_knowledge_file(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(__file__).with_name("data") / "paraphrases.jsonl"
    assert (
        main(
            ["kb", "eval", str(data), "--kb", str(config_path(settings.knowledge.sample)), "--json"]
        )
        == 0
    )
    figures = json.loads(capsys.readouterr().out)
    assert figures["holdout"]["top1"] >= 0.9 and figures["holdout"]["confident_wrong"] <= 0.03


def test_import_reports_derived_spoken_answers_and_misses_are_listed_in_groups(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from config.settings import load_settings
    from hotline.runtime import in_session
    from knowledge import services

    assert main(["kb", "import", str(Path(__file__).with_name("data") / "gov_faq.csv")]) == 0
    out = capsys.readouterr().out
    assert "新增 10 条" in out and "其中 9 条的语音答案为自动生成" in out

    async def record(text: str) -> None:
        await in_session(
            load_settings(), lambda s: services.record_miss(s, text, None, None, "unanswered")
        )

    for text in ("社保卡丢了怎么补办", "我家猫丢了", "我的社保卡掉了咋补啊"):
        asyncio.run(record(text))
    assert main(["kb", "misses", "--groups"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        len(lines) == 2
        and lines[0].lstrip().startswith("2 次")
        and "社保卡丢了怎么补办" in lines[0]
    )
