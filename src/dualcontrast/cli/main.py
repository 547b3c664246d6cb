"""dualcontrast: disentangle content and transformations in images and subtomograms.

Each command is a module of ``dualcontrast.cli`` with ``add_args(parser)`` and ``main(args)``;
its docstring is its help text.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import DualContrastError

COMMANDS = ["train", "embed", "evaluate", "analyze", "simulate", "benchmark", "config"]


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples' layout and appends each flag's default; a None default means the help
    text says where the value comes from (usually the config), so nothing is appended."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or (isinstance(action.default, list) and not action.default):
            return action.help or ""
        return super()._get_help_string(action)


def _available() -> list[tuple[str, object]]:
    found = []
    for name in COMMANDS:
        try:
            found.append((name, importlib.import_module(f"dualcontrast.cli.{name}")))
        except ModuleNotFoundError as e:
            if e.name != f"dualcontrast.cli.{name}":
                raise
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualcontrast", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dualcontrast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _available():
        doc = (module.__doc__ or name).strip()
        p = sub.add_parser(
            name,
            help=doc.splitlines()[0],
            description=doc,
            formatter_class=_HelpFormatter,
        )
        p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
        p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
        module.add_args(p)
        p.set_defaults(func=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in the run's config.yaml
    from .common import setup_logging

    setup_logging(-1 if args.quiet else args.verbose)
    try:
        result = args.func(args)
    except DualContrastError as e:
        print(f"dualcontrast {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dualcontrast {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
