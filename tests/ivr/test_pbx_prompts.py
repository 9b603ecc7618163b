"""The local PBX's IVR prompts: spoken by the voice the PBX is given, re-made only when text or voice change."""

from __future__ import annotations

import wave
from pathlib import Path

from config import Settings
from hotline.wiring import prompt_voice
from ivr.pbx.prompts import PromptVoice, install_prompts

PROMPTS = """voice = "cmn"
speed = 150

[prompts]
welcome = "您好，这里是12345热线。"
goodbye = "再见。"
"""


class Recorder:
    """A voice that writes each text as the file's content, keeping what it was asked to say."""

    def __init__(self, name: str) -> None:
        self.voice = PromptVoice(name, self.speak)
        self.said: list[str] = []

    def speak(self, text: str, target: Path) -> None:
        self.said.append(text)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def test_prompts_are_spoken_by_the_given_voice_and_remade_only_when_it_changes(
    tmp_path: Path,
) -> None:
    source = tmp_path / "prompts.toml"
    source.write_text(PROMPTS, encoding="utf-8")
    folders = {"prompts": tmp_path / "sounds"}
    first = Recorder("kokoro/zf_xiaoxiao")
    assert install_prompts(folders, source, first.voice) == 2
    assert (tmp_path / "sounds" / "welcome.wav").read_text() == "您好，这里是12345热线。"
    again = Recorder("kokoro/zf_xiaoxiao")
    assert install_prompts(folders, source, again.voice) == 0 and again.said == []
    other = Recorder("espeak-ng/cmn/150")
    assert install_prompts(folders, source, other.voice) == 2
    assert other.said == ["您好，这里是12345热线。", "再见。"]


def test_the_pbx_prompts_speak_with_the_bot_s_neural_voice(
    settings: Settings, tmp_path: Path
) -> None:
    kokoro = settings.model_copy(
        update={
            "tts": settings.tts.model_copy(
                update={"engine": "kokoro", "cache_dir": str(tmp_path / "tts")}
            )
        }
    )
    voice = prompt_voice(kokoro)
    assert voice.name.startswith("kokoro")
    target = tmp_path / "menu.wav"
    voice.speak("政策咨询请按1，投诉求助或举报请按2，人工服务请按0。", target)
    with wave.open(str(target)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.getnframes() > 8000 * 2
