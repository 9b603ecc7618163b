"""`python -m bench [NAME ...]`: run the main() of every benchmark module in bench/ (or only those named)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> dict[str, object]:
    """Module name → main() of each bench/*.py that defines one."""
    found = {}
    for info in pkgutil.iter_modules([str(HERE)]):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        main = getattr(module, "main", None)
        if callable(main):
            found[info.name] = main
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    found = benchmarks()
    if args.list:
        print("\n".join(found))
        return 0
    unknown = sorted(set(args.names) - set(found))
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)} (available: {', '.join(found)})",
            file=sys.stderr,
        )
        return 2
    failed = 0
    for name in args.names or list(found):
        print(f"== bench.{name}", flush=True)
        main_fn = found[name]
        code = main_fn([]) if inspect.signature(main_fn).parameters else main_fn()  # type: ignore[operator]
        failed += bool(code)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
