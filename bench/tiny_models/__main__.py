"""``python -m bench.tiny_models NAME DIR [KEY=VALUE ...]``: build one tiny model, print its folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.tiny_models import build, builders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name", help=f"one of: {', '.join(sorted(builders()))}")
    ap.add_argument("folder", type=Path)
    ap.add_argument("options", nargs="*", help="builder keywords, e.g. layout=upstream seed=1")
    args = ap.parse_args()
    kw: dict[str, object] = {}
    for item in args.options:
        key, _, value = item.partition("=")
        kw[key] = int(value) if value.isdigit() else value
    print(build(args.name, args.folder, **kw))


if __name__ == "__main__":
    main()
