"""Problem files: JSONL (one object a line), a JSON list, or CSV.

Fields: `id` (made up from the line number when absent), the question under `question`,
`problem` or `Puzzles` (the Game-of-24 CSV), and an optional reference `answer` (also
`solution`/`Answer`). Every error names the file, the line and the field.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

QUESTION_FIELDS = ("question", "problem", "Puzzles")
ANSWER_FIELDS = ("answer", "Answer", "solution")
MAX_QUESTION_CHARS = 200_000


class ProblemFileError(InputError):
    def __init__(self, path: str | os.PathLike, line: int | None, field_name: str | None, message: str):
        self.path, self.line, self.field = str(path), line, field_name
        where = f"{path}" + (f":{line}" if line is not None else "") + (f": field '{field_name}'" if field_name else "")
        super().__init__(f"{where}: {message}")


class _LongInt(str):
    """The digits of a JSON integer too long for int() (Python caps it at 4300 digits by default).

    json.loads would raise a bare ValueError that names neither line nor field; kept as text, the
    integer reaches `_problem`, which can say which field holds it.
    """


def _parse_int(digits: str) -> int | _LongInt:
    try:
        return int(digits)
    except ValueError:
        return _LongInt(digits)


def _parse_json(path: Path, line: int, text: str) -> object:
    """json.loads, with every way it can fail on a hostile file turned into a ProblemFileError."""
    try:
        return json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as e:
        where = line + e.lineno - 1
        raise ProblemFileError(path, where, None, f"not valid JSON ({e.msg}, column {e.colno})") from e
    except RecursionError as e:
        raise ProblemFileError(path, line, None, "lists or objects nested too deeply to read") from e


def _read_csv(path: Path, text: str) -> list[Problem]:
    # The csv module refuses fields over 131,072 characters, a guard against runaway reads. The whole
    # file is already in memory, so here it guards nothing and would hide the question-length check
    # behind a message that names no field: lift it to the file's length for this read. The limit is
    # process-wide, so put it back afterwards.
    old_limit = csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.DictReader(io.StringIO(text))
    try:
        if not reader.fieldnames or not any(f in reader.fieldnames for f in QUESTION_FIELDS):
            raise ProblemFileError(path, 1, "question", f"CSV header {reader.fieldnames} has no question column "
                                   f"(one of {', '.join(QUESTION_FIELDS)})")
        return [_problem(path, reader.line_num, {k: v for k, v in row.items() if k is not None}) for row in reader]
    except csv.Error as e:
        # DictReader.line_num only moves after a good row; its inner reader's counts the bad line too.
        raise ProblemFileError(path, reader.reader.line_num, None, f"not valid CSV: {e}") from e
    finally:
        csv.field_size_limit(old_limit)


@dataclass
class Problem:
    id: str
    question: str
    answer: str | None = None
    meta: dict = field(default_factory=dict)
    line: int | None = None  # where it is in its file (for error messages)


def _problem(path: Path, line: int, obj: object) -> Problem:
    if not isinstance(obj, dict):
        raise ProblemFileError(path, line, None, f"expected an object, got {type(obj).__name__}")
    long_int = next((k for k, v in obj.items() if isinstance(v, _LongInt)), None)
    if long_int is not None:
        raise ProblemFileError(path, line, long_int, f"is an integer of {len(obj[long_int].lstrip('-'))} digits, "
                               "too long to read")
    qf = next((f for f in QUESTION_FIELDS if f in obj), None)
    if qf is None:
        raise ProblemFileError(path, line, "question", f"missing (looked for {', '.join(QUESTION_FIELDS)})")
    q = obj[qf]
    if isinstance(q, (int, float)) and not isinstance(q, bool):
        q = str(q)
    if not isinstance(q, str):
        raise ProblemFileError(path, line, qf, f"expected a string, got {type(q).__name__}")
    if not q.strip():
        raise ProblemFileError(path, line, qf, "is empty")
    if len(q) > MAX_QUESTION_CHARS:
        raise ProblemFileError(path, line, qf, f"is {len(q)} characters, over the limit of {MAX_QUESTION_CHARS}")
    ans = None
    af = next((f for f in ANSWER_FIELDS if f in obj and obj[f] is not None), None)
    if af is not None:
        a = obj[af]
        if isinstance(a, bool) or not isinstance(a, (str, int, float)):
            raise ProblemFileError(path, line, af, f"expected a string or number, got {type(a).__name__}")
        ans = str(a)
    pid = obj.get("id", obj.get("Rank", obj.get("unique_id")))
    if pid is None:
        pid = f"{path.stem}-{line}"
    elif isinstance(pid, bool) or not isinstance(pid, (str, int)):
        raise ProblemFileError(path, line, "id", f"expected a string or integer, got {type(pid).__name__}")
    meta = {k: v for k, v in obj.items() if k not in (qf, af, "id")}
    return Problem(id=str(pid), question=q, answer=ans, meta=meta, line=line)


def load_problems(path: str | os.PathLike) -> list[Problem]:
    """Read and validate a whole problem file before anything runs; duplicate ids are an error."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ProblemFileError(p, None, None, f"cannot read: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ProblemFileError(p, line, None, "is not UTF-8 text") from e
    if not text.strip():
        raise ProblemFileError(p, None, None, "is empty")
    suffix = p.suffix.lower()
    problems: list[Problem] = []
    if suffix == ".csv":
        problems = _read_csv(p, text)
    elif suffix == ".json" or text.lstrip().startswith("["):
        # A too-deep document is reported at line 1: json.loads does not say where it gave up.
        data = _parse_json(p, 1, text)
        if not isinstance(data, list):
            raise ProblemFileError(p, 1, None, "a JSON problem file must hold a list of objects")
        problems = [_problem(p, i + 1, obj) for i, obj in enumerate(data)]
    else:
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                problems.append(_problem(p, i, _parse_json(p, i, line)))
    seen: dict[str, int] = {}
    for idx, prob in enumerate(problems):
        if prob.id in seen:
            raise ProblemFileError(p, None, "id", f"duplicate id '{prob.id}' (entries {seen[prob.id] + 1} and {idx + 1})")
        seen[prob.id] = idx
    return problems
