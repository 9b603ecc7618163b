"""Scoring (CER, RTF) and the `hotline asr transcribe|eval` commands on real telephone speech."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from asr.evaluate import cer, load_references, normalize, read_wav
from asr.model_install import install_whisper_model, whisper_model_dir
from asr.recognizer import AsrError
from config import Settings

HOTLINE = str(Path(sys.executable).with_name("hotline"))
SUBSET = ("magicdata_cs_100047", "BAC009S0724W0122", "common_voice_zh-CN_18536155")


@pytest.fixture(scope="module")
def whisper_installed(settings: Settings) -> None:
    """The commands load the model from the configured cache, as after `make models`."""
    install_whisper_model(whisper_model_dir(settings))


def test_normalize_folds_script_punctuation_width_and_case() -> None:
    assert normalize("您好，歡迎致電！ Ｑｑ 4个g") == "您好欢迎致电QQ4个G"


def test_cer_counts_edits_per_reference_character() -> None:
    assert cer("广州市房地产", "广州市房地产。") == 0
    assert cer("广州市房地产", "广州是房地") == pytest.approx(2 / 6)
    assert cer("您好", "") == 1


def test_references_need_the_named_columns(tmp_path: Path) -> None:
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("id\ttext\nx\t你好\n", encoding="utf-8")
    with pytest.raises(AsrError) as err:
        load_references(tsv)
    assert err.value.code == "asr.bad_tsv"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HOTLINE, "asr", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_eval_cli_scores_a_telephone_subset(
    whisper_installed: None, shared_dir: Path, tmp_path: Path
) -> None:
    speech = shared_dir / "speech"
    lines = (speech / "transcripts.tsv").read_text(encoding="utf-8").splitlines()
    subset = [lines[0]] + [line for line in lines[1:] if line.split("\t", 1)[0] in SUBSET]
    tsv = tmp_path / "subset.tsv"
    tsv.write_text("\n".join(subset) + "\n", encoding="utf-8")
    done = run(
        "eval", "--wav-dir", str(speech / "wav8k_telephone_sim"), "--tsv", str(tsv), "--json"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["n"] == 3
    assert 0 <= result["cer"] < 0.3
    assert 0 < result["rtf"] < 2


def test_transcribe_cli_takes_any_sample_rate(
    whisper_installed: None, shared_dir: Path, tmp_path: Path
) -> None:
    pcm, rate = read_wav(shared_dir / "speech" / "wav16k" / "magicdata_cs_100047.wav")
    samples = resample_poly(np.frombuffer(pcm, dtype="<i2").astype(np.float64), 441, 160)
    wav = tmp_path / "cd_rate.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.clip(samples, -32768, 32767).astype("<i2").tobytes())
    assert rate == 16000
    done = run("transcribe", str(wav), "--json")
    assert done.returncode == 0, done.stderr
    assert cer("能麻烦您说一下咱们英语能考到多少分", json.loads(done.stdout)["text"]) < 0.3


def test_transcribe_cli_reports_a_missing_file(tmp_path: Path) -> None:
    done = run("transcribe", str(tmp_path / "none.wav"), "--json")
    assert done.returncode == 2
    assert "asr.missing_wav" in done.stderr
