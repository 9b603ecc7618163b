"""The bot's sentences (话术) as data: ``config/bot_prompts.toml`` (or the file ``asr.bot.prompts`` names)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config import HotlineError, Settings, config_path

TEMPLATES = ("ticket_created", "clarify")  # sentences with blanks filled in on the call


class PromptsError(HotlineError):
    """The prompts file is missing or malformed: stable ``code``, Chinese ``message``."""


def _sentence() -> str:
    return Field(min_length=1, max_length=300)  # type: ignore[return-value]


class Prompts(BaseModel):
    """Every sentence the bot says; see the comments in config/bot_prompts.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    greeting: str = _sentence()
    reprompt_question: str = _sentence()
    filler: str = _sentence()
    ask_solved: str = _sentence()
    reprompt_solved: str = _sentence()
    solved_goodbye: str = _sentence()
    ask_matter: str = _sentence()
    reprompt_matter: str = _sentence()
    ask_phone: str = _sentence()
    bad_phone: str = _sentence()
    ticket_created: str = _sentence()
    clarify: str = _sentence()
    answer_by_sms: str = _sentence()
    goodbye: str = _sentence()
    to_human: str = _sentence()
    apology: str = _sentence()

    @field_validator("ticket_created")
    @classmethod
    def _has_digits(cls, value: str) -> str:
        if "{digits}" not in value:
            raise ValueError("ticket_created must contain {digits}")
        return value

    @field_validator("clarify")
    @classmethod
    def _has_both(cls, value: str) -> str:
        if "{first}" not in value or "{second}" not in value:
            raise ValueError("clarify must contain {first} and {second}")
        return value

    def fixed(self) -> list[str]:
        """The sentences that never change (all but the ticket read-back and the clarifying question):
        synthesised at start-up."""
        return [v for k, v in self.model_dump().items() if k not in TEMPLATES]

    def ticket(self, digits: str) -> str:
        return self.ticket_created.format(digits=digits)

    def clarification(self, first: str, second: str) -> str:
        return self.clarify.format(first=first, second=second)


def prompts_file(settings: Settings) -> Path:
    path = Path(settings.asr.bot.prompts)
    return path if path.is_absolute() else config_path(settings.asr.bot.prompts)


def load_prompts(settings: Settings) -> Prompts:
    path = prompts_file(settings)
    try:
        return Prompts.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise PromptsError("bot.prompts_missing", f"机器人话术文件不存在：{path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PromptsError(
            "bot.prompts_invalid", f"机器人话术文件 {path} 格式错误：{exc}"
        ) from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise PromptsError(
            "bot.prompts_invalid", f"机器人话术文件 {path} 的 {where} 有误：{err['msg']}"
        ) from None
