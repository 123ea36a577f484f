"""Tasks: how to prompt for, extract, compare, grade and rule-check answers of one kind of problem.

A task is anything with the `Task` protocol's attributes; agent code can bring its own. The search
uses `instructions`, `extract`, `equivalent` and `rule_check` (none of which see a reference);
only the meter calls `grade`, after the search.
"""

from __future__ import annotations

from ..errors import UsageError
from .base import BaseTask, Task, as_task, extract_boxed, extract_number, final_answer, numbers_equal
from .builtin import AIME, Arith, Game24, Generic, GSM8K, MathTask

TASKS: dict[str, type] = {"arith": Arith, "gsm8k": GSM8K, "math": MathTask, "game24": Game24, "aime": AIME,
                          "generic": Generic}


def get_task(name_or_task: "str | Task") -> BaseTask:
    """A task by name, or agent code's own task object with the defaults of what it leaves out."""
    if not isinstance(name_or_task, str):
        return as_task(name_or_task)
    try:
        return TASKS[name_or_task]()
    except KeyError:
        raise UsageError(f"unknown task '{name_or_task}'; known: {', '.join(TASKS)}") from None


def detect_task(questions: list[str], answers: list[str | None], path: str = "") -> Task:
    """Guess the task from a problem file: Game-of-24 puzzles, arithmetic, GSM8K, MATH, AIME."""
    lower = path.lower()
    for name in ("game24", "gsm8k", "aime", "math", "arith"):
        if name in lower or (name == "game24" and "24.csv" in lower):
            return get_task(name)
    if questions and all(Game24.looks_like(q) for q in questions[:20]):
        return Game24()
    if questions and all(Arith.looks_like(q) for q in questions[:20]):
        return Arith()
    refs = [a for a in answers[:50] if a is not None]
    if refs and all("####" in a for a in refs):
        return GSM8K()
    if refs and any("\\" in a or "{" in a for a in refs):
        return MathTask()
    return Generic()


__all__ = ["AIME", "Arith", "BaseTask", "GSM8K", "Game24", "Generic", "MathTask", "TASKS", "Task", "as_task", "detect_task",
           "extract_boxed", "extract_number", "final_answer", "get_task", "numbers_equal"]
