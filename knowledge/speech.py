"""The spoken answer (语音答案) derived from a written one, for the bot's TTS.

Real knowledge bases are written for reading: statute citations in brackets (（依据：《居民身份证法》第二条）),
reference marks ([1], 【1】), links, tables, and answers far longer than a caller can follow. The derived
spoken answer drops citations, reference marks and links, reads tables row by row, turns numbers, dates,
percentages, money and telephone numbers into the Chinese a TTS voice reads correctly (cn2an, plus telephone
numbers read digit by digit), and keeps the leading sentences that fit the speech limit.
"""

from __future__ import annotations

import re

import cn2an

UNSPEAKABLE = re.compile(r"https?://|www\.|[()（）\[\]【】{}<>〔〕［］]")
_URL = re.compile(r"(?:https?://|www\.)[\x21-\x7e]+")
_BRACKETS = {"（": "）", "(": ")", "【": "】", "[": "]", "〔": "〕", "［": "］", "{": "}", "<": ">"}
_BRACKETED = re.compile(
    "|".join(f"{re.escape(o)}([^{re.escape(o + c)}]*){re.escape(c)}" for o, c in _BRACKETS.items())
)
# bracketed text that is a citation or a reference mark rather than part of what is said
_CITATION = re.compile(
    r"^\s*(?:\d+|[一二三四五六七八九十]+|注\d*|详见.*|参见.*|见.*|依据.*|根据.*|来源.*|出处.*|"
    r".*《[^》]+》.*|.*第[一二三四五六七八九十百零\d]+条.*)\s*$"
)
_CITED_TAIL = re.compile(
    r"[，,；;]?\s*(?:法律依据|政策依据|依据|根据|参见|详见|来源|出处)\s*[:：].*$"
)
_HEADING = re.compile(r"^\s*【([^】]{1,20})】\s*")
_NUMBERING = re.compile(r"^\s*(\d{1,2})\s*[.、．)）]\s*(?=\D)")
_CITATION_SENTENCE = re.compile(
    r"^\s*(?:法律依据|政策依据|依据|参考|参考文献|来源|出处|相关链接|链接|网址)\s*[:：]"
)
_TABLE_RULE = re.compile(r"^[\s|:：\-—=+]+$")
_SENTENCE = re.compile(r"[^。！？；!?;\n]+[。！？；!?;]*")
_CLAUSE_END = "，、：,:"
# telephone numbers, read digit by digit: mobiles, landlines with area code, 400/800 lines, 12345-style hotlines,
# and any digits right after a word that announces a number
_PHONE = re.compile(
    r"(?<![\d.])(?:1[3-9]\d{9}|0\d{2,3}-\d{7,8}|[48]00-?\d{3}-?\d{4}|1[12]\d{3}|11[0-9]|12[0-2])"
    r"(?![\d.%％元万亿人个天年月日号条款项平米公克斤岁周分秒])"
    r"|(?<=电话|热线|拨打|致电|号码|手机|专线)[:：“\"]?\s*\d[\d-]{2,}\d"
)
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CLOCK = re.compile(r"(?<![\d:])([01]?\d|2[0-4])[:：]([0-5]\d)(?![\d:])")
_RANGE = re.compile(r"(?<=[\d%％])\s*[-~～—]\s*(?=\d)")
_YUAN = re.compile(r"[¥￥]\s*(\d+(?:\.\d+)?)")
_FEW_YEARS = re.compile(
    r"(?<![\d.])\d{1,3}(?=年)"
)  # a duration (10年), not a year (cn2an reads 年 as a year)
_TWO = re.compile(r"(?<![\d.])2(?=[个次种项份张名位天周月年小])")
_DECIMAL_ZEROS = re.compile(r"(\d+\.\d*?)0+(?!\d)")
_SPACES = re.compile(r"[ \t\u3000]+")
_DIGIT_NAMES = dict(zip("0123456789", "零幺二三四五六七八九", strict=True))
# a caller hears "一" in a number as "幺" (as operators say it), so 12345 is 幺二三四五


def speakable(text: str) -> bool:
    """Whether TTS can read ``text`` as it is: no links, no brackets."""
    return not UNSPEAKABLE.search(text)


def derive_speech(text: str, max_chars: int) -> str:
    """A spoken answer of at most ``max_chars`` characters from a written answer (see the module docstring)."""
    lines = [_speak_line(line) for line in _table_rows(text)]
    spoken = "".join(_sentence_end(line) for line in lines if line)
    return short_form(spoken, max_chars)


def _table_rows(text: str) -> list[str]:
    """Lines of ``text`` with table rows (pipes or tabs) read as 「第一格：其余格」; a header row (one followed
    by a rule line such as ``|---|---|``) and rule lines are dropped."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    rows: list[str] = []
    for i, line in enumerate(lines):
        cells = _cells(line)
        if cells is None:
            rows.append(line)
        elif not _is_rule(line) and not (i + 1 < len(lines) and _is_rule(lines[i + 1])):
            rows.append("：".join([cells[0], "，".join(cells[1:])]) if len(cells) > 1 else cells[0])
    return rows


def _is_rule(line: str) -> bool:
    return "-" in line and bool(_TABLE_RULE.match(line))


def _cells(line: str) -> list[str] | None:
    """The cells of a table row, or None when the line is not one."""
    if "\t" in line:
        parts = line.split("\t")
    elif line.count("|") >= 2 or line.count("｜") >= 2:
        parts = re.split(r"[|｜]", line.strip().strip("|｜"))
    else:
        return None
    cells = [p.strip() for p in parts if p.strip()]
    return cells or None


def _speak_line(line: str) -> str:
    line = _HEADING.sub(lambda m: f"{m[1]}：", _URL.sub("官方网站", line))
    line = _NUMBERING.sub(lambda m: f"{cn2an.an2cn(m[1])}、", line)
    line = _drop_citations(line)
    if _CITATION_SENTENCE.match(line):
        return ""
    line = _SPACES.sub("", line.strip()).strip("，,、")
    return spoken_numbers(line)


def _drop_citations(line: str) -> str:
    """Bracketed citations and reference marks go (with the citing tail of a bracket, 「，依据：…」); other
    bracketed words are kept without the brackets."""
    while True:
        found = _BRACKETED.search(line)
        if found is None:
            return UNSPEAKABLE.sub("", line)
        inner = _CITED_TAIL.sub("", next(g for g in found.groups() if g is not None))
        kept = "" if not inner.strip() or _CITATION.match(inner) else f"，{inner.strip()}，"
        line = line[: found.start()] + kept + line[found.end() :]
        line = re.sub(r"，+([，。！？；、：])", r"\1", line).replace("，，", "，")


def spoken_numbers(text: str) -> str:
    """Telephone numbers digit by digit; dates, percentages, money and other numbers as Chinese numerals."""
    text = _PHONE.sub(lambda m: "".join(_DIGIT_NAMES.get(c, "") for c in m.group(0)), text)
    text = _ISO_DATE.sub(lambda m: f"{m[1]}年{int(m[2])}月{int(m[3])}日", text)
    text = _RANGE.sub("至", _YUAN.sub(r"\1元", _THOUSANDS.sub("", text)))
    text = _CLOCK.sub(lambda m: f"{int(m[1])}点" + (f"{int(m[2])}分" if int(m[2]) else ""), text)
    text = _DECIMAL_ZEROS.sub(lambda m: m[1].rstrip("."), text)
    text = _TWO.sub("两", text)
    text = _FEW_YEARS.sub(lambda m: str(cn2an.an2cn(m[0])), text)
    if any(c.isdigit() for c in text):
        text = str(cn2an.transform(text, "an2cn"))
    return text


def _sentence_end(line: str) -> str:
    line = line.rstrip("，,、;； ")
    return line if not line or line[-1] in "。！？!?；;：:" else line + "。"


def short_form(spoken: str, max_chars: int) -> str:
    """The leading whole sentences that fit ``max_chars``; a first sentence too long is cut at a clause end."""
    if len(spoken) <= max_chars:
        return spoken
    out = ""
    for sentence in _SENTENCE.findall(spoken):
        if len(out) + len(sentence) > max_chars:
            break
        out += sentence
    if out:
        return out[:-1] + "。" if out[-1] in "；;" else out
    head = spoken[:max_chars]
    cut = max(head.rfind(c) for c in _CLAUSE_END)
    return (head[:cut] if cut > 0 else head[:-1]) + "。"
