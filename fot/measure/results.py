"""The results record and its file: what one finished problem is (`Result`, written; `Record`, read), and
`fot.solve`'s file of them, one whole JSON line per problem, resumable and locked.

Versioned: a line says its `schema` (2; lines without one are schema 1, fot before issue 23) and its
`provenance` (fot's version, the git commit when run from a checkout, the problem file's sha256).
`Record.from_row` reads every schema into one typed shape, so the meter, the viewer and the server read
fields, not guesses; a row written by an older fot reads with the defaults of what it lacks.

A line is written only when its problem is finished, fsynced before the run goes on, and cut back
off if the write fails, so a crash or a full disk never leaves a problem half-recorded. Every line
records the settings that made it (`run`), so a resume can refuse to mix settings. A sidecar lock
(`OUT.lock`, flock) keeps a second run off the file while the first is writing.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..errors import EnvironmentFailure
from ..tasks.problems import ProblemFileError
from .usage import Usage

SCHEMA = 2


@dataclass
class Result:
    id: str
    question: str
    task: str
    answer: str | None
    text: str
    decision: str
    trees: list[dict]
    snapshots: list[list[dict]]  # per tree: [{rollout, tokens, answer, q, calls}, ...]
    tokens: dict
    calls: int
    cost_usd: float
    wall_s: float
    expert_tokens: int = 0
    expert_usage: dict = field(default_factory=dict)
    error: str = ""
    error_kind: str = ""  # why there is no answer, one of fot.errors.ERROR_KINDS ("" when answered)
    answers_seen: list[str] = field(default_factory=list)  # every distinct answer any node produced
    settings: dict = field(default_factory=dict)  # what the meter needs to replay the decision
    method: str = "forest"
    samples: list[dict] = field(default_factory=list)  # cot / sc / bon: every sample, in seed order
    evaluation: dict = field(default_factory=dict)  # self-evaluation samples asked for and read
    early_stopped: bool = False
    budget_bound: dict = field(default_factory=dict)  # {"problem": bool, "trees": [bool]}: which caps shaped the search
    roles: dict = field(default_factory=dict)  # tokens per role (answer, critique, refine, evaluate, expert, ...)
    stop: dict = field(default_factory=dict)  # forest: why the other trees were cancelled and the calls cut off
    # every tree's every node (forest methods): the trees file's line, not the results line, which stays small
    forest: list[dict] = field(default_factory=list, repr=False)
    # the errors behind a missing answer (trees' or samples'), for SolveError's cause: never written
    failures: list[Exception] = field(default_factory=list, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The results line: everything but the node record (`trees_line`), about six times its size."""
        d = asdict(replace(self, forest=[], failures=[]))  # (not copied: the node record is not this line's)
        d.pop("forest"), d.pop("failures")
        return {"schema": SCHEMA, **d}

    def __getstate__(self) -> dict:
        """Pickled (a Ray worker's result on its way to the driver) without the live exceptions."""
        return {**self.__dict__, "failures": []}

    def trees_line(self) -> dict:
        """The trees file's line for this problem (docs/viewer.md)."""
        return {"id": self.id, "trees": self.forest}


@dataclass
class Record:
    """A results line as read back, any schema: typed fields with the defaults of what an old line lacks."""

    id: str
    question: str = ""
    task: str = ""
    method: str = "forest"
    answer: str | None = None
    text: str = ""
    decision: str = "none"
    trees: list[dict] = field(default_factory=list)
    snapshots: list[list[dict]] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    tokens: Usage = field(default_factory=Usage)
    expert_usage: Usage = field(default_factory=Usage)
    calls: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    error: str = ""
    error_kind: str = ""
    answers_seen: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    early_stopped: bool = False
    budget_bound: dict = field(default_factory=dict)
    roles: dict = field(default_factory=dict)
    stop: dict = field(default_factory=dict)
    reference: str | None = None
    correct: bool | None = None
    oracle_correct: bool | None = None
    run: dict = field(default_factory=dict)
    schema: int = 1
    provenance: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: "dict | Record") -> "Record":
        if isinstance(row, Record):
            return row
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in known and v is not None}
        values["id"] = str(row.get("id"))
        values["tokens"] = Usage.from_dict(row.get("tokens"))
        values["expert_usage"] = Usage.from_dict(row.get("expert_usage"), total=(
            (row.get("expert_usage") or {}).get("prompt", 0) + (row.get("expert_usage") or {}).get("completion", 0)))
        for k in ("answer", "reference", "correct", "oracle_correct"):
            values[k] = row.get(k)  # None is a value here
        return cls(**values)

    @property
    def rollouts(self) -> int:
        return self.settings.get("rollouts", 0)

    @property
    def tree_count(self) -> int:
        return self.settings.get("trees", len(self.snapshots))


def provenance(problems: str | os.PathLike | None = None) -> dict:
    """fot's version, the git commit of the checkout it runs from (if it does), the problem file's sha256."""
    import hashlib
    import subprocess

    from ..errors import __version__

    out: dict = {"fot": __version__}
    here = Path(__file__).resolve().parents[2]  # the checkout: fot/measure/results.py -> .
    if (here / ".git").exists():
        try:
            done = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                                  timeout=5)
            if done.returncode == 0:
                out["commit"] = done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    if problems is not None:
        try:
            out["problems_sha256"] = hashlib.sha256(Path(problems).read_bytes()).hexdigest()
        except OSError:
            pass
    return out


class OutputLock:
    """The sidecar lock of one --out (`OUT.lock`, flock), removed when the run ends so none is left behind.

    Removing a lock file is safe only if a waiter cannot end up holding the removed file while a newcomer
    locks a new one; so after taking the lock we check that the path still names the file we locked, and
    start again if it does not (the holder removed it meanwhile)."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None

    def acquire(self) -> "OutputLock":
        while True:
            fh = open(self.path, "a")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fh = fh
                return self
            fh.close()  # the last holder removed it after we opened it: lock the new one

    def release(self) -> None:
        fh, self.fh = self.fh, None
        if fh is not None:
            try:
                os.unlink(self.path)  # while still holding it: see the class docstring
            except OSError:
                pass
            fh.close()

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_output(out: Path, trace: str | None) -> OutputLock:
    """Lock --out for this run (a second run on the same file is refused) and check the paths, before
    anything is read, started or sent. The lock is a sidecar file: resuming rewrites --out itself."""
    if trace is not None and Path(trace).is_dir():
        raise ProblemFileError(trace, None, None, "--trace is a directory; give a file path")
    if out.is_dir():
        raise ProblemFileError(out, None, None, "--out is a directory; give a file path")
    lock = OutputLock(out.with_name(out.name + ".lock"))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return lock.acquire()
    except BlockingIOError:
        raise ProblemFileError(out, None, None, "another fot.solve run is writing to this file; wait for it to "
                               "finish or give another --out") from None
    except OSError as e:
        raise EnvironmentFailure(f"cannot write next to {out}", e) from None


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


COMMON_SETTINGS = ("method", "task", "backend", "model", "budget", "seed")


def run_settings(values: dict, recorded: tuple[str, ...]) -> dict:
    """What decides a result, recorded in every row so a resume can tell if it would mix settings: the
    common ones and those the method says its results depend on (`Method.recorded`, fot/methods/)."""
    return {k: values.get(k) for k in (*COMMON_SETTINGS, *(k for k in recorded if k not in COMMON_SETTINGS))}


def changed_settings(done: dict[str, dict], now: dict) -> list[str]:
    """How the finished results' settings differ from this run's, e.g. ["trees 3 -> 2"]."""
    changes: dict[str, set] = {}
    for row in done.values():
        for k, v in (row.get("run") or {}).items():
            if k in now and v != now[k]:
                changes.setdefault(k, set()).add(json.dumps(v))
    return [f"{k} {' / '.join(sorted(old))} -> {json.dumps(now[k])}" for k, old in changes.items()]


def open_lines(path: Path) -> int:
    """A file descriptor to append whole lines to: unbuffered, so a line that failed to be written is not
    left in a buffer to be written (or to fail again) when the file is closed."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def append_line(fd: int, out: Path, row: dict) -> None:
    """One whole result line, on disk before we go on; a failed write is cut back off, so no
    problem is ever half-recorded, and raises EnvironmentFailure (the run stops; not the problem's fault)."""
    # allow_nan=False: NaN or Infinity would make the line not JSON for every other reader (the viewer's
    # JSON.parse shows nothing); the ValueError comes before any byte is written
    data = (json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n").encode()
    pos = os.lseek(fd, 0, os.SEEK_END)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as e:
        try:
            os.ftruncate(fd, pos)
        except OSError:
            pass
        raise EnvironmentFailure(f"cannot write results to {out}", e) from None


def close_lines(fd: int | None, path: Path, created: bool) -> None:
    """Close a lines file; one this run created and left empty is removed (no empty files left behind)."""
    if fd is None:
        return
    try:
        empty = os.fstat(fd).st_size == 0
    except OSError:
        empty = False
    os.close(fd)
    if created and empty:
        try:
            path.unlink()
        except OSError:
            pass


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
