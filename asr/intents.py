"""What the caller means, from recognised text: a human wanted (转人工), yes or no, and the kind of 诉求.

Rules on characters, not a model: the replies the bot asks for are short and the words for them few. Text is
normalised first (no punctuation or spaces), because Whisper punctuates freely.
"""

from __future__ import annotations

import re
from typing import Literal

from asr.evaluate import normalize

YesNo = Literal["yes", "no"]

_HUMAN = re.compile(r"人工|真人|转人|接线员|话务员|坐席|客服人员|找人说")
_MESSAGE = re.compile(r"留言|留个言|留话|录音留")
# "没问题" is a yes although it starts like a no; then "没有解决" / "不是" / "没用" … are checked before the
# yes words they contain (解决, 是).
_YES_FIRST = re.compile(r"没(有)?问题|没事了|不用了")
_NO = re.compile(
    r"^(不|没|否|别)|没(有)?解决|不(是|对|行|好|清楚|明白|满意|用|够)|没(用|有)|未解决|还是不|否"
)
_YES = re.compile(
    r"^(是|对|嗯|好|行|可以|有|解决|明白|清楚|谢谢|知道)"
    r"|解决了|清楚了|明白了|知道了|可以了|好的|是的|对的|谢谢"
)
_DTMF_YES_NO: dict[str, YesNo] = {"1": "yes", "2": "no"}

# Kinds of 诉求 (TicketDraft.kind) by the caller's words, most specific first; default 咨询.
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("举报", re.compile(r"举报|违法|偷排|非法|传销|诈骗")),
    ("投诉", re.compile(r"投诉|不满|乱收费|态度差|不作为|扰民|噪音|拖欠|克扣|欺诈|不给办")),
    ("求助", re.compile(r"求助|帮忙|帮帮|救|漏水|停水|停电|停气|没水|没电|堵|坏了|困难")),
    ("建议", re.compile(r"建议|希望|能不能增加|最好")),
    ("表扬", re.compile(r"表扬|感谢.*(工作人员|师傅|同志)|锦旗")),
)


def wants_human(text: str) -> bool:
    """The caller asks for a person (人工服务)."""
    return bool(_HUMAN.search(normalize(text)))


def wants_message(text: str) -> bool:
    """The caller would rather leave a voice message (留言)."""
    return bool(_MESSAGE.search(normalize(text)))


def yes_no(text: str) -> YesNo | None:
    """ "解决了" → yes, "没有解决" → no, anything else → None."""
    t = normalize(text)
    if not t:
        return None
    if _YES_FIRST.search(t):
        return "yes"
    if _NO.search(t):
        return "no"
    if _YES.search(t):
        return "yes"
    return None


def yes_no_key(digit: str) -> YesNo | None:
    """DTMF 1 = yes, 2 = no."""
    return _DTMF_YES_NO.get(digit)


def kind_of(text: str) -> str:
    """The 诉求 kind the caller's words suggest: 举报 投诉 求助 建议 表扬, else 咨询."""
    t = normalize(text)
    return next((kind for kind, pattern in _KINDS if pattern.search(t)), "咨询")
