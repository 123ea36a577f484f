"""`python -m fot {solve,sweep,serve,view,datasets} ...` (and the `fot` console script): one entry point for the
commands, each of which is also runnable on its own as `python -m fot.<command>`."""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {"solve": "run the forest on a problem file or a dataset", "sweep": "accuracy against tokens over forest shapes",
            "serve": "an OpenAI-compatible endpoint in front of the forest (and a proxy for plain model names)",
            "view": "one HTML page to read a run's forests or a sweep (--watch: kept current while it runs)",
            "datasets": "the benchmark datasets known by name, and which the data directory holds"}


def program_name() -> str:
    """How the user ran fot: `fot` (the console script) or `python -m fot`."""
    return "fot" if os.path.basename(sys.argv[0] or "") == "fot" else "python -m fot"


def datasets(argv: list[str]) -> int:
    from .options import Parser
    from .tasks.datasets import available, data_dir

    ap = Parser(prog=f"{program_name()} datasets", description="The benchmark datasets fot reads by name "
                "(--dataset NAME[:SPLIT] on fot solve), and whether the data directory holds them.")
    ap.add_argument("--data-dir", metavar="DIR", default=None,
                    help="where the files are (default $FOT_DATA, else ../shared/data next to the checkout)")
    args = ap.parse_args(argv)
    root, origin = data_dir(args.data_dir)
    print(f"data directory: {root} ({origin})")
    rows = available(args.data_dir)
    width = max(len(spec) for spec, _, _ in rows)
    for spec, n, about in rows:
        print(f"  {spec:<{width}}  {n}  {about}" if not n.startswith(("missing", "unreadable")) else
              f"  {spec:<{width}}  {n}")
    return 0 if any(not n.startswith(("missing", "unreadable")) for _, n, _ in rows) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    prog = program_name()
    if argv and argv[0] in ("--version", "-V"):
        from .errors import __version__

        print(f"fot {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        usage = f"usage: {prog} [--version] {{" + ",".join(COMMANDS) + "} ...\n\n" + "".join(
            f"  {name:<8} {what}\n" for name, what in COMMANDS.items()) + f"\n'{prog} COMMAND --help' for its options"
        known = bool(argv) and argv[0] in ("-h", "--help")
        print(usage if known or not argv else f"{prog}: unknown command '{argv[0]}'\n{usage}",
              file=sys.stdout if known else sys.stderr)
        return 0 if known else 2
    if argv[0] == "datasets":
        return datasets(argv[1:])
    from .options import running_as

    module = importlib.import_module(f"fot.{argv[0]}")
    with running_as(f"{prog} {argv[0]}"):  # its usage and errors name the command as it was run
        return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
