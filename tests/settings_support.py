"""The settings the tests hand to the domain services, as the composition root does: the shipped file with the
environment's ``HOTLINE_*`` overrides, read once for the session."""

from __future__ import annotations

import os

from config import Settings, load_settings

# The bot's tests judge the dialogue, not the voice: they speak with espeak-ng (with Kokoro a bot start would
# synthesise every answer, ~45 s more per test on 2 cores). `hotline run` in the e2e tests inherits it;
# tests/asr/test_tts_kokoro.py builds Kokoro itself.
os.environ.setdefault("HOTLINE_TTS_ENGINE", "espeak-ng")
SETTINGS: Settings = load_settings()
