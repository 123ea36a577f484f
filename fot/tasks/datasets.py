"""The benchmark datasets by name (`--dataset gsm8k`, `--dataset aime:2025`): which files under a data
directory hold them, which task grades them, and how their rows become problems. The repository ships no
data: the files are read where they are, from `--data-dir`, else $FOT_DATA, else `../shared/data` next to
the checkout (the layout of /work/shared/data: one folder per dataset, README.md there).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .problems import Problem, ProblemFileError, load_problems


@dataclass(frozen=True)
class Dataset:
    name: str
    task: str  # the task that grades it (fot/tasks/__init__.py TASKS)
    splits: dict[str, tuple[str, ...]]  # split -> files under the data directory
    default_split: str
    about: str
    yes_no: bool = False  # answers are JSON booleans, read as "yes" / "no"


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("gsm8k", "gsm8k", {"test": ("gsm8k/test.jsonl",)}, "test", "grade-school math word problems"),
    Dataset("math500", "math", {"test": ("math500/test.jsonl",)}, "test", "MATH-500 competition problems"),
    Dataset("game24", "game24", {"test": ("game24/24.csv",)}, "test", "Game of 24 puzzles (ToT's list)"),
    Dataset("aime", "aime", {"all": ("aime/aime2024.jsonl", "aime/aime2025.jsonl"), "2024": ("aime/aime2024.jsonl",),
                             "2025": ("aime/aime2025.jsonl",)}, "all", "AIME 2024 and 2025, integer answers"),
    Dataset("strategyqa", "generic", {"dev": ("strategyqa/dev.json",)}, "dev", "StrategyQA yes/no questions",
            yes_no=True),
)}


class DatasetError(ProblemFileError):
    """A dataset that is not known, or whose file is not where it was looked for: one line naming the file."""

    def __init__(self, message: str):
        InputError.__init__(self, message)  # the message names the file itself
        self.path, self.line, self.field = None, None, None


def data_dir(given: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data directory and where it came from (for messages): --data-dir, $FOT_DATA, else next to the checkout."""
    if given:
        return Path(given), "--data-dir"
    if os.environ.get("FOT_DATA"):
        return Path(os.environ["FOT_DATA"]), "$FOT_DATA"
    return Path(__file__).resolve().parents[3] / "shared" / "data", "next to the checkout"


@dataclass(frozen=True)
class Selection:
    dataset: Dataset
    split: str
    paths: tuple[Path, ...]

    @property
    def label(self) -> str:
        return f"{self.dataset.name}-{self.split}"


def select(spec: str, directory: str | os.PathLike | None = None) -> Selection:
    """`name[:split]` -> its files, each checked to exist (else a DatasetError naming the file looked for)."""
    name, _, split = spec.partition(":")
    d = DATASETS.get(name.strip().lower())
    if d is None:
        raise DatasetError(f"--dataset {spec!r}: unknown dataset; known: {', '.join(DATASETS)} (fot datasets lists them)")
    split = split.strip() or d.default_split
    if split not in d.splits:
        raise DatasetError(f"--dataset {spec!r}: {d.name} has no split '{split}'; its splits: {', '.join(d.splits)}")
    root, origin = data_dir(directory)
    paths = tuple(root / f for f in d.splits[split])
    for p in paths:
        if not p.is_file():
            raise DatasetError(f"--dataset {spec}: {p} not found (data directory {root}, {origin}; give --data-dir DIR "
                               "or set FOT_DATA)")
    return Selection(d, split, paths)


def load(selection: Selection) -> list[Problem]:
    """The problems of a selection, in file order; ids stay unique across its files."""
    problems: list[Problem] = []
    for path in selection.paths:
        problems += _yes_no(path) if selection.dataset.yes_no else load_problems(path)
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise DatasetError(f"{selection.label}: duplicate id '{p.id}' across {', '.join(map(str, selection.paths))}")
        seen.add(p.id)
    return problems


def _yes_no(path: Path) -> list[Problem]:
    """StrategyQA's JSON list: `question`, a boolean `answer` (read as yes / no), `qid`; facts stay in meta."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ProblemFileError(path, None, None, f"cannot read: {e}") from None
    if not isinstance(rows, list):
        raise ProblemFileError(path, 1, None, "expected a JSON list of objects")
    out = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
            raise ProblemFileError(path, i, "question", "missing or not a string")
        answer = row.get("answer")
        if answer is not None and not isinstance(answer, bool):
            raise ProblemFileError(path, i, "answer", f"expected true or false, got {type(answer).__name__}")
        meta = {k: v for k, v in row.items() if k not in ("question", "answer", "qid")}
        out.append(Problem(id=str(row.get("qid", f"{path.stem}-{i}")), question=row["question"],
                           answer=None if answer is None else ("yes" if answer else "no"), meta=meta, line=i))
    return out


def available(directory: str | os.PathLike | None = None) -> list[tuple[str, str, str]]:
    """(dataset:split, rows or why not, what it is) for every known split: what `fot datasets` prints."""
    out = []
    for d in DATASETS.values():
        for split in d.splits:
            spec = f"{d.name}:{split}"
            try:
                n = f"{len(load(select(spec, directory)))} problems"
            except ProblemFileError as e:
                n = f"missing: {e}" if isinstance(e, DatasetError) else f"unreadable: {e}"
            out.append((spec, n, f"{d.about} (task {d.task})"))
    return out
