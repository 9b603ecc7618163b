"""The city's district/street layout for the cockpit heat map (a tile map: one grid cell per street).

No map tiles and no geodata service: the layout is a small JSON file shipped in ``config/districts.json``
(a sample city). A city replaces it by listing its districts (区县) and streets (街道/乡镇) with the names its
tickets use and a grid cell ``[x, y]`` for each street, and points ``[cockpit] district_layout`` at the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config import Settings, config_path


class LayoutError(ValueError):
    """The layout file is missing or breaks a rule; the message says which and where."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreetCell(_Frozen):
    name: str = Field(min_length=1, max_length=50)
    cell: tuple[int, int] = Field(description="格子坐标 [列 x, 行 y]，从左上角 0 起")


class DistrictArea(_Frozen):
    name: str = Field(min_length=1, max_length=50)
    streets: list[StreetCell] = Field(min_length=1)


class DistrictLayout(_Frozen):
    """A city as a grid of street cells grouped by district."""

    city: str
    about: str = ""
    columns: int = Field(ge=1, le=200)
    rows: int = Field(ge=1, le=200)
    districts: list[DistrictArea] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> DistrictLayout:
        seen_cells: dict[tuple[int, int], str] = {}
        names = [d.name for d in self.districts]
        if len(set(names)) != len(names):
            raise ValueError("区县名称重复")
        for d in self.districts:
            streets = [s.name for s in d.streets]
            if len(set(streets)) != len(streets):
                raise ValueError(f"{d.name} 的街道名称重复")
            for s in d.streets:
                x, y = s.cell
                if not (0 <= x < self.columns and 0 <= y < self.rows):
                    raise ValueError(
                        f"{d.name}{s.name} 的格子 {list(s.cell)} 超出 {self.columns}×{self.rows} 的范围"
                    )
                if s.cell in seen_cells:
                    raise ValueError(
                        f"{d.name}{s.name} 与 {seen_cells[s.cell]} 占用同一格子 {list(s.cell)}"
                    )
                seen_cells[s.cell] = f"{d.name}{s.name}"
        return self

    def places(self) -> set[tuple[str, str]]:
        """Every (district, street) of the layout."""
        return {(d.name, s.name) for d in self.districts for s in d.streets}


def load_layout(path: Path) -> DistrictLayout:
    try:
        return DistrictLayout.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise LayoutError(f"找不到区县布局文件：{path}") from None
    except json.JSONDecodeError as exc:
        raise LayoutError(
            f"区县布局文件 {path} 不是有效的 JSON：第 {exc.lineno} 行 {exc.msg}"
        ) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise LayoutError(
            f"区县布局文件 {path} 有误：{where} {first['msg'].removeprefix('Value error, ')}"
        ) from None


def layout_path(settings: Settings) -> Path:
    path = Path(settings.cockpit.district_layout)
    return path if path.is_absolute() else config_path(settings.cockpit.district_layout)


def layout_from_settings(settings: Settings) -> DistrictLayout:
    return load_layout(layout_path(settings))
