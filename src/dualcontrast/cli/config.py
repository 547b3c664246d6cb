"""List every config key with its default, type, allowed range and meaning (or print a default config file).

examples:
  dualcontrast config                 # table of keys
  dualcontrast config --yaml > my.yaml  # a complete default config to edit
"""

from __future__ import annotations

import argparse
import json


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yaml", action="store_true", help="print a complete default config file instead of the table")


def main(args: argparse.Namespace) -> int:
    import yaml

    from ..config import Config, describe_range, iter_keys

    if args.yaml:
        print(yaml.safe_dump(Config().to_dict(), sort_keys=False), end="")
        return 0
    rows = []
    for path, f, value in iter_keys():
        kind = str(f.type).replace("dict[str, Any]", "mapping")
        limits = describe_range(f)
        rows.append((path, json.dumps(value),
                     kind + (f", {limits}" if limits else ""), f.metadata.get("help", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return 0
