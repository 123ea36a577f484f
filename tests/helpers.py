"""Small helpers shared by the command-line tests."""

import json
from pathlib import Path

from fot.tasks import Arith


def write_problems(tmp_path, n: int, seed: int, name: str) -> Path:
    """A generated arithmetic problem file (ids arith-001 ...) with references."""
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in Arith.generate(n, seed=seed)))
    return path


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]
