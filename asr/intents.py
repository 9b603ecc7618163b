"""What the caller means, from recognised text: a human wanted (转人工), yes or no, which of two questions (澄清),
and the kind of 诉求.

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
# Which of the two questions of a clarifying question: by its place, or neither.
_FIRST = re.compile(r"第一|头一|前面|前一|前者|上一个|^(一|1|幺)(个)?$")
_SECOND = re.compile(r"第二|后面|后一|后者|下一个|^(二|2|两)(个)?$")
_NEITHER = re.compile(r"都不|都没|哪个也不|哪个都不|^不是|^不对|^没有|其他|别的")
_DTMF_PICK = {"1": 0, "2": 1}

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


def neither(text: str) -> bool:
    """The caller means neither of the two questions offered (「都不是」)."""
    return bool(_NEITHER.search(normalize(text)))


def pick(text: str, questions: tuple[str, str]) -> int | None:
    """Which of ``questions`` the caller means, 0 or 1: by place (「第一个」「后面那个」), else the one whose own
    characters (those the other lacks) the caller's words share more of; None when it stays open."""
    t = normalize(text)
    if not t or _NEITHER.search(t):
        return None
    first, second = bool(_FIRST.search(t)), bool(_SECOND.search(t))
    if first != second:
        return 0 if first else 1
    a, b = (set(normalize(q)) for q in questions)
    shared = (len(set(t) & (a - b)), len(set(t) & (b - a)))
    if shared[0] == shared[1]:
        return None
    return 0 if shared[0] > shared[1] else 1


def pick_key(digit: str) -> int | None:
    """DTMF 1 = the first question, 2 = the second."""
    return _DTMF_PICK.get(digit)


def kind_of(text: str) -> str:
    """The 诉求 kind the caller's words suggest: 举报 投诉 求助 建议 表扬, else 咨询."""
    t = normalize(text)
    return next((kind for kind, pattern in _KINDS if pattern.search(t)), "咨询")
