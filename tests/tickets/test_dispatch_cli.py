"""`hotline dispatch …` as a user runs it: train, suggest --json, eval --json, catalogue, bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hotline.cli import main

WAGES = "我们公司已经拖欠了三个月工资，老板也联系不上"


@pytest.fixture
def model_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "dispatch_model.joblib"
    monkeypatch.setenv("HOTLINE_DISPATCH_MODEL_PATH", str(path))
    return path


def test_train_then_suggest_json(
    shared_dir: Path, model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dispatch", "train", str(shared_dir / "dispatch" / "history_sample.jsonl")]) == 0
    assert "222 条样本" in capsys.readouterr().out and model_path.exists()
    assert main(["dispatch", "suggest", WAGES, "--json"]) == 0
    suggestions = json.loads(capsys.readouterr().out)["suggestions"]
    assert 1 <= len(suggestions) <= 3
    assert all(set(s) == {"label", "department", "score", "why"} for s in suggestions)
    assert (
        suggestions[0]["department"] == "市人力资源和社会保障局"
        and "历史工单模型" in suggestions[0]["why"]
    )


def test_eval_json_reports_accuracy_and_baselines(
    shared_dir: Path, model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "dispatch",
                "eval",
                str(shared_dir / "dispatch" / "history_sample.jsonl"),
                "--folds",
                "3",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["kfold"]["folds"] == 3
    assert set(report["holdout"]["methods"]) == {
        "suggester",
        "model_only",
        "keywords_only",
        "majority",
    }
    assert (
        report["holdout"]["methods"]["suggester"]["top1"]
        > report["holdout"]["methods"]["majority"]["top1"]
    )
    assert not model_path.exists()  # evaluating stores nothing


def test_bad_training_file_exits_2_with_line_and_code(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "拖欠工资", "label": "劳动和社会保障"}\n{"text": \n', encoding="utf-8")
    assert main(["dispatch", "train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "dispatch.training_data_invalid" in err and "第 2 行" in err
    assert not model_path.exists()


def test_catalogue_lists_categories(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dispatch", "catalogue", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"城乡建设", "公共安全"} <= {c["name"] for c in data["categories"]}


def test_console_script_suggests_from_catalogue_without_a_model(tmp_path: Path) -> None:
    env = {**os.environ, "HOTLINE_DISPATCH_MODEL_PATH": str(tmp_path / "none.joblib")}
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("hotline")),
            "dispatch",
            "suggest",
            "化工厂排放废气",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    best = json.loads(done.stdout)["suggestions"][0]
    assert best["department"] == "市生态环境局" and "未训练" in best["why"]
