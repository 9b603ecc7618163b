"""The category tree (诉求分类) read from ``config/categories.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from config import config_path
from tickets.errors import InvalidInput

SEPARATOR = "/"


@dataclass(frozen=True)
class CategoryTree:
    """First-level names mapped to their second-level names, in file order."""

    children: dict[str, tuple[str, ...]]

    @classmethod
    def from_toml(cls, text: str) -> CategoryTree:
        data = tomllib.loads(text)
        tree: dict[str, tuple[str, ...]] = {}
        for entry in data.get("category", []):
            name = str(entry["name"]).strip()
            kids = tuple(str(c).strip() for c in entry.get("children", []))
            if not name or SEPARATOR in name or name in tree:
                raise ValueError(f"categories: bad or duplicate first-level name {name!r}")
            if len(set(kids)) != len(kids) or any(not c or SEPARATOR in c for c in kids):
                raise ValueError(f"categories: bad or duplicate child under {name!r}")
            tree[name] = kids
        return cls(tree)

    def paths(self) -> list[str]:
        """Every valid category value: each first-level name and each ``first/second`` path."""
        out: list[str] = []
        for top, kids in self.children.items():
            out.append(top)
            out.extend(f"{top}{SEPARATOR}{kid}" for kid in kids)
        return out

    def validate(self, value: str) -> str:
        """The canonical category for ``value`` (spaces around ``/`` removed) or InvalidInput."""
        parts = [p.strip() for p in value.split(SEPARATOR)]
        top, rest = parts[0], parts[1:]
        known = top in self.children and (
            not rest or (len(rest) == 1 and rest[0] in self.children[top])
        )
        if not known:
            raise InvalidInput(
                f"未知的诉求分类：{value!r}。请从分类目录中选择，如“{self.paths()[1]}”",
                code="ticket.unknown_category",
                field="category",
            )
        return SEPARATOR.join(parts)


@lru_cache(maxsize=4)
def _parse(path: Path, mtime_ns: int, size: int) -> CategoryTree:
    return CategoryTree.from_toml(path.read_text(encoding="utf-8"))


def load_categories(path: Path | None = None) -> CategoryTree:
    """The shipped tree (or the file at ``path``), read again when the file changed: edits apply without a
    restart."""
    path = path or config_path("categories.toml")
    stat = path.stat()
    return _parse(path, stat.st_mtime_ns, stat.st_size)
