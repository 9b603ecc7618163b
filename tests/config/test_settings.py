"""The typed settings object: shipped file, environment overrides, clear errors."""

from datetime import time
from pathlib import Path

import pytest

from config import SettingsError, load_settings
from config.settings import AsrSettings, AudioSocketSettings, VadSettings


def test_shipped_file_loads_with_documented_defaults() -> None:
    s = load_settings(env={})
    assert s.database.url.startswith("sqlite+aiosqlite://")
    assert s.console.port == 8080
    assert s.office_hours.morning_start == time(9, 0)
    assert {t.name for t in s.deadlines.tiers} >= {"instant", "3h", "24h", "3wd", "5wd"}


def test_shipped_config_defaults_no_ami_credentials() -> None:
    s = load_settings(env={})
    assert s.ami.username == "" and s.ami.secret == ""


def test_environment_overrides_nested_and_top_level_keys() -> None:
    s = load_settings(
        env={
            "HOTLINE_DATABASE_URL": "postgresql+asyncpg://u@h/db",
            "HOTLINE_CONSOLE_PORT": "9000",
            "HOTLINE_TIMEZONE": "UTC",
            "HOTLINE_OVERFLOW_MAX_ESTIMATED_WAIT_S": "30",
        }
    )
    assert s.database.url == "postgresql+asyncpg://u@h/db"
    assert s.console.port == 9000
    assert s.timezone == "UTC"
    assert s.overflow.max_estimated_wait_s == 30.0


def test_bad_value_names_the_key_and_expectation() -> None:
    with pytest.raises(SettingsError, match=r"console\.port") as err:
        load_settings(env={"HOTLINE_CONSOLE_PORT": "eighty"})
    assert "integer" in str(err.value)


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "h.toml"
    bad.write_text(
        Path("config/hotline.toml").read_text(encoding="utf-8") + "\n[console2]\nx = 1\n",
        encoding="utf-8",
    )
    with pytest.raises(SettingsError, match="console2"):
        load_settings(bad, env={})


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml", env={})


def test_environment_override_of_a_section_whose_name_has_an_underscore() -> None:
    s = load_settings(env={"HOTLINE_OFFICE_HOURS_MORNING_START": "08:30:00"})
    assert s.office_hours.morning_start == time(8, 30)


def test_environment_overrides_keys_of_nested_sections() -> None:
    s = load_settings(
        env={
            "HOTLINE_ASR_AUDIOSOCKET_PORT": "19093",
            "HOTLINE_ASR_BOT_VAD_MIN_SILENCE_MS": "300",
            "HOTLINE_ASR_AUDIOSOCKET_ALLOW": "127.0.0.1,10.1.2.3",
            "HOTLINE_ASR_ENGINE": "vosk",
        }
    )
    assert s.asr.audiosocket.port == 19093
    assert s.asr.audiosocket.allow == ("127.0.0.1", "10.1.2.3")
    assert s.asr.engine == "vosk"
    assert s.asr.bot.vad_min_silence_ms == 300  # the bot's own key, not asr.vad.min_silence_ms
    assert s.asr.vad.min_silence_ms == VadSettings().min_silence_ms
    assert (
        s.asr.audiosocket.host == AudioSocketSettings().host
    )  # the rest of the section keeps its values


def test_a_nested_section_in_the_file_and_the_environment_on_top(tmp_path: Path) -> None:
    shipped = Path("config/hotline.toml").read_text(encoding="utf-8")
    assert shipped.count("\nsilence_timeout_s = 8.0\n") == 1
    path = tmp_path / "h.toml"
    path.write_text(
        shipped.replace("\nsilence_timeout_s = 8.0\n", "\nsilence_timeout_s = 5.5\n").replace(
            "\nmax_silences = 2\n", "\nmax_silences = 3\n"
        ),
        encoding="utf-8",
    )
    s = load_settings(path, env={"HOTLINE_ASR_BOT_MAX_SILENCES": "4"})
    assert (s.asr.bot.silence_timeout_s, s.asr.bot.max_silences) == (5.5, 4)


def test_a_key_named_without_its_nested_section_is_an_error() -> None:
    with pytest.raises(SettingsError, match=r"asr\.beam_size"):  # it is asr.whisper.beam_size
        load_settings(env={"HOTLINE_ASR_BEAM_SIZE": "2"})
    with pytest.raises(SettingsError, match=r"asr\.audiosocket\.port"):
        load_settings(env={"HOTLINE_ASR_AUDIOSOCKET_PORT": "0"})


def test_the_shipped_file_holds_the_models_defaults() -> None:
    assert load_settings(env={}).asr == AsrSettings()


def test_pause_reasons_are_distinct_printable_and_at_least_one() -> None:
    assert load_settings().console.pause_reasons == ("休息", "培训", "会议", "用餐", "其他")
    env = {"HOTLINE_CONSOLE_PAUSE_REASONS": "休息,培训"}
    assert load_settings(env=env).console.pause_reasons == ("休息", "培训")
    for bad in ("休息,休息", "休\n息", ""):
        with pytest.raises(SettingsError, match=r"console\.pause_reasons"):
            load_settings(env={"HOTLINE_CONSOLE_PAUSE_REASONS": bad})
