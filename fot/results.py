"""The results file of `fot.solve`: one whole JSON line per finished problem, resumable and locked.

A line is written only when its problem is finished, fsynced before the run goes on, and cut back
off if the write fails, so a crash or a full disk never leaves a problem half-recorded. Every line
records the settings that made it (`run`), so a resume can refuse to mix settings. A sidecar lock
(`OUT.lock`, flock) keeps a second run off the file while the first is writing.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
from pathlib import Path

from .errors import EnvironmentFailure
from .problems import ProblemFileError


def lock_output(out: Path, trace: str | None):
    """Lock --out for this run (a second run on the same file is refused) and check the paths, before
    anything is read, started or sent. The lock is a sidecar file: resuming rewrites --out itself."""
    if trace is not None and Path(trace).is_dir():
        raise ProblemFileError(trace, None, None, "--trace is a directory; give a file path")
    if out.is_dir():
        raise ProblemFileError(out, None, None, "--out is a directory; give a file path")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = open(out.with_name(out.name + ".lock"), "a")
    except OSError as e:
        raise EnvironmentFailure(f"cannot write next to {out}", e) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ProblemFileError(out, None, None, "another fot.solve run is writing to this file; wait for it to "
                               "finish or give another --out") from None
    return lock


def read_finished(out: Path, retry_errors: bool) -> dict[str, dict]:
    """Results already in `out`. A torn last line (a crash mid-write) is cut off; with
    `retry_errors`, lines that ended in an error are dropped so those problems run again."""
    if not out.is_file():  # absent, or a device such as /dev/full: nothing finished to read
        return {}
    raw = out.read_bytes()
    keep: list[bytes] = []
    done: dict[str, dict] = {}
    changed = False
    for line in raw.splitlines(keepends=True):
        try:
            row = json.loads(line)
            if not line.endswith(b"\n") or not isinstance(row, dict) or "id" not in row:
                raise ValueError
        except ValueError:
            changed = True
            continue
        if retry_errors and row.get("error"):
            changed = True
            continue
        if str(row["id"]) in done:
            changed = True
            continue
        done[str(row["id"])] = row
        keep.append(line)
    if changed:
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_bytes(b"".join(keep))
        os.replace(tmp, out)
    return done


RUN_SETTINGS = ("method", "task", "backend", "model", "trees", "rollouts", "samples", "reward_samples",
                "eval_max_tokens", "budget", "tree_budget", "decision", "tie_break", "early_stop", "seed")


def run_settings(args: argparse.Namespace, task_name: str, backend_kind: str, model: str | None) -> dict:
    """What decides a result, recorded in every row so a resume can tell if it would mix settings."""
    values = {**vars(args), "task": task_name, "backend": backend_kind, "model": model}
    run = {k: values.get(k) for k in RUN_SETTINGS}
    if args.method in ("cot", "sc", "bon"):  # sampling: the tree settings do not apply
        for k in ("trees", "rollouts", "decision", "tie_break", "early_stop", "tree_budget"):
            run.pop(k)
    if args.method != "bon" and args.method in ("cot", "sc"):
        run.pop("reward_samples"), run.pop("eval_max_tokens")
    if args.method in ("forest", "mctsr"):
        run.pop("samples")
    return run


def changed_settings(done: dict[str, dict], now: dict) -> list[str]:
    """How the finished results' settings differ from this run's, e.g. ["trees 3 -> 2"]."""
    changes: dict[str, set] = {}
    for row in done.values():
        for k, v in (row.get("run") or {}).items():
            if k in now and v != now[k]:
                changes.setdefault(k, set()).add(json.dumps(v))
    return [f"{k} {' / '.join(sorted(old))} -> {json.dumps(now[k])}" for k, old in changes.items()]


def append_line(fh, out: Path, row: dict) -> None:
    """One whole result line, on disk before we go on; a failed write is cut back off, so no
    problem is ever half-recorded, and raises EnvironmentFailure (the run stops; not the problem's fault)."""
    pos = fh.tell()
    try:
        # allow_nan=False: NaN or Infinity would make the line not JSON for every other reader (the viewer's
        # JSON.parse shows nothing); the ValueError comes before any byte is written
        fh.write(json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    except OSError as e:
        try:
            fh.truncate(pos)
        except OSError:
            pass
        raise EnvironmentFailure(f"cannot write results to {out}", e) from None


def trees_path(out: Path) -> Path:
    """The node record kept next to the results: `o.jsonl` -> `o.trees.jsonl` (docs/viewer.md)."""
    return out.with_name(out.stem + ".trees.jsonl")


def prune_trees(path: Path, finished: dict[str, dict]) -> None:
    """Keep one trees line per finished result, the last one written. A problem's trees line is written
    before its results line, so a crash between the two leaves a trees line whose result is missing; the
    problem runs again and writes a second one. Dropping lines without a result here (and duplicates)
    keeps the pair consistent without any two-file transaction."""
    if not path.is_file():
        return
    kept: dict[str, bytes] = {}
    raw = path.read_bytes()
    for line in raw.splitlines(keepends=True):
        try:
            row = json.loads(line)
            if not line.endswith(b"\n") or not isinstance(row, dict) or "id" not in row:
                continue
        except ValueError:
            continue
        if str(row["id"]) in finished:
            kept.pop(str(row["id"]), None)
            kept[str(row["id"])] = line
    new = b"".join(kept.values())
    if new != raw:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(new)
        os.replace(tmp, path)
