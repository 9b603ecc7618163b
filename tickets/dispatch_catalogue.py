"""The dispatch catalogue (派单目录): category → department (承办单位), responsible people, keywords, a
description, areas, and the labels of a city's history that mean the category.

The file is ``settings.dispatch.catalogue`` (a name in ``config/`` or an absolute path); its format is
documented at the top of ``config/dispatch_catalogue.toml``. A malformed file raises
:class:`~tickets.dispatch_errors.CatalogueError` naming the key and its line.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config.settings import Settings, config_path
from tickets.dispatch_errors import CatalogueError

DESCRIPTION_MAX_CHARS = 120


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CatalogueEntry(_Strict):
    """One category of 诉求 and the department that handles it."""

    name: str = Field(min_length=1)  # 诉求分类
    department: str = Field(min_length=1)  # 承办单位
    phone: str = Field("", pattern=r"^([0-9]{3,20})?$")  # 承办单位电话: transfers, three-way calls
    leader: str = Field(min_length=1)  # 分管领导
    leader_title: str = Field(min_length=1)
    person: str = Field(min_length=1)  # 责任人
    person_title: str = Field(min_length=1)
    keywords: tuple[str, ...] = Field(min_length=1)
    description: str = Field(
        "", max_length=DESCRIPTION_MAX_CHARS
    )  # one sentence: what the category covers
    history_labels: tuple[
        str, ...
    ] = ()  # labels of a ticket history that mean this category (besides its name)
    areas: tuple[str, ...] = ()  # 服务区县; empty = every district
    examples: tuple[str, ...] = ()  # typical citizens' messages of the category, matched by meaning

    @field_validator("keywords", "history_labels", "examples")
    @classmethod
    def _no_blank_word(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not k.strip() for k in value):
            raise ValueError("must not contain an empty string")
        return tuple(k.strip() for k in value)

    @field_validator("description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value:
            raise ValueError("description must be one line")
        return value


class _CatalogueFile(_Strict):
    districts: tuple[str, ...] = Field(min_length=1)
    category: tuple[CatalogueEntry, ...] = Field(min_length=1)


@dataclass(frozen=True)
class Catalogue:
    """The loaded catalogue; entries keep the file's order."""

    districts: tuple[str, ...]
    entries: tuple[CatalogueEntry, ...]

    def by_category(self, name: str) -> CatalogueEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def by_department(self, department: str) -> CatalogueEntry | None:
        """The first entry dispatched to ``department``."""
        return next((e for e in self.entries if e.department == department), None)

    def phone_of(self, department: str) -> str:
        """The department's hotline (承办单位电话), empty when the catalogue gives none."""
        return next((e.phone for e in self.entries if e.department == department and e.phone), "")

    def serves(self, entry: CatalogueEntry, district: str) -> bool:
        return not entry.areas or district in entry.areas

    def categories_of_history_label(self, label: str) -> tuple[str, ...]:
        """The categories a history label means: the category of that name, then those listing it in
        ``history_labels`` (file order); empty when the catalogue does not know the label."""
        return tuple(e.name for e in self.entries if e.name == label or label in e.history_labels)

    def keyword_hits(self, text: str) -> dict[str, list[str]]:
        """Category name → the keywords of that category found in ``text`` (categories without a hit left out)."""
        hits = {e.name: [k for k in e.keywords if k in text] for e in self.entries}
        return {name: found for name, found in hits.items() if found}


def catalogue_file(settings: Settings) -> Path:
    path = Path(settings.dispatch.catalogue)
    return path if path.is_absolute() else config_path(settings.dispatch.catalogue)


def load_catalogue(settings: Settings) -> Catalogue:
    """Read and check the catalogue named by ``settings.dispatch.catalogue``."""
    path = catalogue_file(settings)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"无法读取派单目录 {path}：{exc.strerror}") from exc
    return parse_catalogue(text, str(path))


def parse_catalogue(text: str, source: str = "<派单目录>") -> Catalogue:
    """Parse catalogue TOML ``text``; ``source`` names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        line = int(found.group(1)) if found else None
        raise CatalogueError(f"{source} 第 {line} 行：TOML 格式错误（{exc}）", line=line) from exc
    try:
        parsed = _CatalogueFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        line = _line_of(text, err["loc"])
        raise CatalogueError(
            f"{source} 第 {line} 行：键 {key} 无效（{err['msg']}）", line=line, key=key
        ) from None
    _check_consistency(parsed, text, source)
    return Catalogue(districts=parsed.districts, entries=parsed.category)


def _check_consistency(parsed: _CatalogueFile, text: str, source: str) -> None:
    seen: set[str] = set()
    for i, entry in enumerate(parsed.category):
        if entry.name in seen:
            line = _line_of(text, ("category", i, "name"))
            raise CatalogueError(
                f"{source} 第 {line} 行：分类“{entry.name}”重复",
                line=line,
                key=f"category.{i}.name",
            )
        seen.add(entry.name)
        repeated = sorted(
            {
                h
                for h in entry.history_labels
                if entry.history_labels.count(h) > 1 or h == entry.name
            }
        )
        if repeated:
            line = _line_of(text, ("category", i, "history_labels"))
            raise CatalogueError(
                f"{source} 第 {line} 行：分类“{entry.name}”的 history_labels 重复列出"
                f"“{'、'.join(repeated)}”（分类名本身已对应同名标签）",
                line=line,
                key=f"category.{i}.history_labels",
            )
        departments = [
            h for h in entry.history_labels if any(h == e.department for e in parsed.category)
        ]
        if departments:
            line = _line_of(text, ("category", i, "history_labels"))
            raise CatalogueError(
                f"{source} 第 {line} 行：history_labels 中的“{'、'.join(departments)}”是承办单位，"
                "不能作为分类的历史标签",
                line=line,
                key=f"category.{i}.history_labels",
            )
        unknown = [a for a in entry.areas if a not in parsed.districts]
        if unknown:
            line = _line_of(text, ("category", i, "areas"))
            raise CatalogueError(
                f"{source} 第 {line} 行：分类“{entry.name}”的服务区县“{'、'.join(unknown)}”不在 districts 中",
                line=line,
                key=f"category.{i}.areas",
            )


def _line_of(text: str, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the key at ``loc`` (its table's header when the key is missing)."""
    lines = text.splitlines()
    start, end = 0, len(lines)
    if loc and loc[0] == "category" and len(loc) > 1 and isinstance(loc[1], int):
        headers = [n for n, ln in enumerate(lines) if re.match(r"\s*\[\[\s*category\s*\]\]", ln)]
        if loc[1] < len(headers):
            start = headers[loc[1]]
            end = headers[loc[1] + 1] if loc[1] + 1 < len(headers) else len(lines)
        key = str(loc[2]) if len(loc) > 2 else None
    else:
        key = str(loc[0]) if loc else None
        end = next((n for n, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
    if key is not None:
        pattern = re.compile(rf'\s*"?{re.escape(key)}"?\s*=')
        for n in range(start, end):
            if pattern.match(lines[n]):
                return n + 1
    return start + 1
