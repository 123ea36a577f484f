"""`python -m fot {solve,sweep,serve,view} ...` (and the `fot` console script): one entry point for the
commands, each of which is also runnable on its own as `python -m fot.<command>`."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {"solve": "run the forest on a problem file", "sweep": "accuracy against tokens over forest shapes",
            "serve": "an OpenAI-compatible endpoint in front of the forest",
            "view": "one HTML page to read a run's forests or a sweep"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        usage = "usage: fot {" + ",".join(COMMANDS) + "} ...\n\n" + "".join(
            f"  {name:<6} {what}\n" for name, what in COMMANDS.items()) + "\n'fot COMMAND --help' for its options"
        known = bool(argv) and argv[0] in ("-h", "--help")
        print(usage if known or not argv else f"fot: unknown command '{argv[0]}'\n{usage}",
              file=sys.stdout if known else sys.stderr)
        return 0 if known else 2
    module = importlib.import_module(f"fot.{argv[0]}")
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
