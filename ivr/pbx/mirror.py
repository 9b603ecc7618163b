"""The Debian mirror this machine already uses, read from its apt sources (never a host written in the repo).

Both formats are read: deb822 ``*.sources`` files (``URIs:`` / ``Suites:`` stanzas) and one-line ``deb``
entries of ``sources.list`` and ``*.list``. The pick is the main Debian archive: a ``deb`` entry for a
Debian suite with the ``main`` component, not the security archive, preferring a URI path ending in
``/debian`` (what debootstrap expects).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ivr.pbx.errors import PbxError

APT_SOURCES_LIST = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")

# Debian suite names and codenames; a suite like "bookworm-updates" counts by its first part.
DEBIAN_SUITES = frozenset(
    {
        "stable",
        "oldstable",
        "oldoldstable",
        "testing",
        "unstable",
        "sid",
        "experimental",
        "buster",
        "bullseye",
        "bookworm",
        "trixie",
        "forky",
        "duke",
    }
)


@dataclass(frozen=True)
class AptSource:
    """One ``deb``/``deb-src`` line or one deb822 stanza."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    enabled: bool = True


def parse_deb822(text: str) -> list[AptSource]:
    """Stanzas of a ``*.sources`` file; comment lines (``#``) are skipped, continuation lines joined."""
    out: list[AptSource] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, sep, value = line.partition(":")
            if not sep:
                key = ""
                continue
            key = key.strip().lower()
            fields[key] = value.strip()
        if "uris" not in fields:
            continue
        out.append(
            AptSource(
                types=tuple(fields.get("types", "").split()),
                uris=tuple(fields["uris"].split()),
                suites=tuple(fields.get("suites", "").split()),
                components=tuple(fields.get("components", "").split()),
                enabled=fields.get("enabled", "yes").lower() not in {"no", "false", "0"},
            )
        )
    return out


def parse_one_line(text: str) -> list[AptSource]:
    """``deb [options] URI suite component…`` lines of ``sources.list``; comments and blanks are skipped."""
    out: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)  # [arch=amd64 signed-by=…]
        parts = line.split()
        if len(parts) < 3 or parts[0] not in {"deb", "deb-src"}:
            continue
        out.append(
            AptSource(
                types=(parts[0],), uris=(parts[1],), suites=(parts[2],), components=tuple(parts[3:])
            )
        )
    return out


def _is_security(uri: str, suite: str) -> bool:
    return "security" in uri or suite.endswith("-security") or suite.endswith("/updates")


def pick_debian_archive(sources: list[AptSource]) -> str | None:
    """The URI of the main Debian archive among *sources*, or None."""
    candidates: list[str] = []
    for src in sources:
        if not src.enabled or "deb" not in src.types or "main" not in src.components:
            continue
        for uri in src.uris:
            if not uri.startswith(("http://", "https://", "file:/")):
                continue
            for suite in src.suites:
                if suite.split("-")[0] in DEBIAN_SUITES and not _is_security(uri, suite):
                    candidates.append(uri.rstrip("/"))
    candidates.sort(key=lambda uri: not uri.endswith("/debian"))
    return candidates[0] if candidates else None


def read_apt_sources(
    sources_list: Path = APT_SOURCES_LIST, sources_dir: Path = APT_SOURCES_DIR
) -> list[AptSource]:
    """Every source configured on this machine, in apt's reading order."""
    sources: list[AptSource] = []
    if sources_list.is_file():
        sources += parse_one_line(sources_list.read_text(encoding="utf-8", errors="replace"))
    if sources_dir.is_dir():
        for path in sorted(sources_dir.iterdir()):
            text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
            if path.suffix == ".sources":
                sources += parse_deb822(text)
            elif path.suffix == ".list":
                sources += parse_one_line(text)
    return sources


def debian_mirror(
    configured: str = "", sources_list: Path = APT_SOURCES_LIST, sources_dir: Path = APT_SOURCES_DIR
) -> str:
    """*configured* when set, else the main Debian archive of this machine's apt sources."""
    if configured:
        return configured.rstrip("/")
    uri = pick_debian_archive(read_apt_sources(sources_list, sources_dir))
    if uri is None:
        raise PbxError(
            "pbx.mirror_not_found",
            "在本机 apt 源中找不到 Debian 主仓库，请设置 HOTLINE_PBX_MIRROR",
            f"searched {sources_list} and {sources_dir}",
        )
    return uri
