"""The command line, generated from the settings dataclasses (fot/config.py): one field, one option.

`fot.solve`, `fot.sweep` and `fot serve` build their parsers here, so a setting is one field and the
commands cannot drift apart. Every option's default is left out of the Namespace (SUPPRESS): what a
user typed is told apart from a default, so presets (the embedded model's 2x1 forest) and a
`--config run.toml` file apply underneath, and the command line wins. A value is checked by the
field's own limits (`minimum`, `above`, finite) with the option's name in the message, the same
check the dataclass makes for agent code.

`--config FILE`: a TOML file of the same fields by name (`trees = 2`, `base_url = ["http://..."]`),
at the top or under [search], [backend] and [run]; an unknown key is refused naming the file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import types
import typing
import urllib.parse
from pathlib import Path
from typing import Any, Iterable

from .config import BackendSettings, RunSettings, SearchConfig, flag_of, limit_violation

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


_RUN_AS: list[str] = []  # how the command was run, when through `fot COMMAND` (fot/__main__.py)


def program(default: str) -> str:
    """The command's name as the user ran it (`fot serve`), else `default` (`python -m fot.serve`)."""
    return _RUN_AS[-1] if _RUN_AS else default


@contextlib.contextmanager
def running_as(name: str):
    _RUN_AS.append(name)
    try:
        yield
    finally:
        _RUN_AS.pop()


class Parser(argparse.ArgumentParser):
    """A usage error is one line: argparse's default puts the whole usage (dozens of lines here) before it. The
    program is named as it was run (`fot serve`, `python -m fot.serve`)."""

    def __init__(self, *args: Any, **kw: Any):
        if "prog" in kw:
            kw["prog"] = program(kw["prog"])
        super().__init__(*args, **kw)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def _choices(name: str | None) -> list[str] | None:
    if name == "tasks":
        from .tasks import TASKS

        return ["auto", *TASKS]
    if name == "methods":
        from .methods import METHODS

        return list(METHODS)
    if name == "decision":
        from .search.decision import DECISION_RULES

        return list(DECISION_RULES)
    return None


def _base_url(s: str) -> str:
    """Refuse a URL the HTTP client would choke on later (a port out of range, no host) now, by name."""
    try:
        u = urllib.parse.urlsplit(s)
        u.port  # noqa: B018 -- raises ValueError when out of range
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--base-url {s!r}: {e}") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise argparse.ArgumentTypeError(f"--base-url {s!r}: expected http(s)://HOST[:PORT]/PATH")
    return s


def _scalar(kind: type, f: dataclasses.Field, optional: bool):
    """The argparse `type` for one field: parse, then the field's own limits, the option named."""
    flag = flag_of(f)

    def parse(s: str):
        if optional and s.lower() == "none":
            return None
        try:
            v = kind(s)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{flag} must be {what}, got {s[:40]!r}") from None
        why = limit_violation(f, v)
        if why:
            raise argparse.ArgumentTypeError(why.split(", got")[0] + f", got {s[:40]}")
        return v

    return parse


def _split(kind: type, f: dataclasses.Field):
    flag = flag_of(f)

    def parse(s: str) -> tuple:
        try:
            return tuple(kind(x.strip()) for x in s.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be comma-separated {kind.__name__}s, got {s!r}") from None

    return parse


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type inside Optional[...], whether None is allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def add_settings(ap: argparse.ArgumentParser, cls: type, title: str, *, skip: Iterable[str] = (),
                 only: Iterable[str] | None = None) -> list[str]:
    """One option per field of the settings dataclass `cls`, in a group; returns the fields added."""
    hints = typing.get_type_hints(cls)
    group = ap.add_argument_group(title)
    skip, only = set(skip), (set(only) if only is not None else None)
    added = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True) or f.name in skip or (only is not None and f.name not in only):
            continue
        hint, optional = _unwrap(hints[f.name])
        help_ = f.metadata.get("help", "")
        help_ += default_note(f.default, help_, hint is bool)
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_}
        if f.metadata.get("metavar"):
            kw["metavar"] = f.metadata["metavar"]
        if hint is bool:
            kw["action"] = "store_true" if not f.default else argparse.BooleanOptionalAction
        elif f.metadata.get("append"):
            kw["action"] = "append"
            kw["type"] = _base_url if f.metadata.get("url") else str
        elif typing.get_origin(hint) is tuple:
            kw["type"] = _split(typing.get_args(hint)[0], f)
        elif "optional_value" in f.metadata:
            kw["nargs"], kw["const"] = "?", f.metadata["optional_value"]
        elif hint in (int, float):
            kw["type"] = _scalar(hint, f, optional)
        named = f.metadata.get("choices")
        choices = list(named) if isinstance(named, tuple) else _choices(named or ("decision" if f.name == "decision"
                                                                                else None))
        if f.name == "tie_break":
            choices = ["expert", "q"]
        if f.name == "verifier":
            from .search.verifiers import VERIFIERS

            choices = list(VERIFIERS)
        if choices is not None:
            kw["choices"] = choices
        group.add_argument(flag_of(f), *f.metadata.get("aliases", ()), **kw)
        added.append(f.name)
    return added


def default_note(default: Any, help_: str, flag: bool = False) -> str:
    """' (default X)' for an option's help, unless the help already says its default."""
    if "default" in help_:
        return ""
    if flag and not default:
        return " (default off)"
    if default in (None, (), ""):
        return " (default none)"
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    return f" (default {shown})"


def add_config_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE.toml",
                    help="read settings from a TOML file (the same names as the options, with _ for -, at the top "
                         "or under [search], [backend], [run]); the command line wins (default none)")


SECTIONS = {"search": SearchConfig, "backend": BackendSettings, "run": RunSettings}


def read_config(path: str) -> dict[str, Any]:
    """The settings in a TOML file, flat by field name; a key no settings class has is an error."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"--config {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"--config {path}: {e}") from None
    known = {f.name: cls for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for k, v in value.items():
                if k not in {f.name for f in dataclasses.fields(SECTIONS[key])}:
                    raise ValueError(f"--config {path}: [{key}] has no setting '{k}'")
                flat[k] = v
        elif key in known:
            flat[key] = value
        else:
            raise ValueError(f"--config {path}: no setting '{key}' (names are the options' with _ for -)")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in flat.items()}


def given(ns: argparse.Namespace, cls: type, file_values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields of `cls` set by the config file or the command line (the command line wins)."""
    names = {f.name for f in dataclasses.fields(cls)}
    out = {k: v for k, v in (file_values or {}).items() if k in names}
    out.update({k: tuple(v) if isinstance(v, list) else v for k, v in vars(ns).items() if k in names})
    return out


def build(cls: type, values: dict[str, Any], base: Any = None) -> Any:
    """The settings object: `base` (or the defaults) with `values` on top; a bad value raises UsageError."""
    return dataclasses.replace(base, **values) if base is not None else cls(**values)


def read_settings(args: argparse.Namespace, skip: Iterable[str] = ()) -> tuple[dict, BackendSettings, dict, dict]:
    """What a command's Namespace says, once for every command: (the --config file's values, the backend
    settings with the environment's defaults under them, the search settings given, the run settings given);
    `skip` names fields the caller's own options mean. A bad value raises ValueError naming its option."""
    file_values = read_config(args.config) if getattr(args, "config", None) else {}
    skip = set(skip)

    def of(cls: type) -> dict:
        return {k: v for k, v in given(args, cls, file_values).items() if k not in skip}

    backend = backend_from_env(build(BackendSettings, of(BackendSettings)))
    search = of(SearchConfig)
    SearchConfig(**search)  # a bad value is refused now, by name, before anything is read or started
    return file_values, backend, search, of(RunSettings)


def backend_from_env(b: BackendSettings) -> BackendSettings:
    """The environment's defaults under what was given: $OPENAI_BASE_URL, $FOT_MODEL, $FOT_GGUF, $OPENAI_API_KEY."""
    changes: dict[str, Any] = {}
    if not b.base_url and os.environ.get("OPENAI_BASE_URL"):
        try:
            changes["base_url"] = (_base_url(os.environ["OPENAI_BASE_URL"]),)
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"$OPENAI_BASE_URL: {e}") from None
    if b.model is None and os.environ.get("FOT_MODEL"):
        changes["model"] = os.environ["FOT_MODEL"]
    if b.gguf is None and os.environ.get("FOT_GGUF"):
        changes["gguf"] = os.environ["FOT_GGUF"]
    if b.api_key is None and os.environ.get("OPENAI_API_KEY") is not None:
        changes["api_key"] = os.environ["OPENAI_API_KEY"]
    return dataclasses.replace(b, **changes) if changes else b
