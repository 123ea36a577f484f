"""The task protocol, the base class that gives a task's optional powers their defaults, and the
answer-extraction helpers that the built-in tasks share."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Task(Protocol):
    name: str
    instructions: str  # appended to the question in the answer prompt

    def extract(self, text: str) -> str | None:
        """The final answer stated in a model's text, or None."""

    def equivalent(self, a: str, b: str, question: str) -> bool:
        """Whether two extracted answers say the same thing (used for voting; no reference)."""

    def grade(self, answer: str | None, reference: str, question: str) -> bool:
        """Whether an answer is right against the reference (the meter only)."""

    def rule_check(self, question: str, text: str) -> bool | None:
        """True/False when a rule can judge the text without the reference; None when it cannot."""


MAX_EXAMINED = 16_000  # characters of a reply that extraction reads, its end: 2x the longest answer cap (aime, 2,048
# tokens at about 4 characters each); only a backend that ignores max_tokens sends more, and the answer is at the end


def examined(text: str) -> str:
    """The part of a reply extraction reads: its last MAX_EXAMINED characters, from the first line start among
    them (a line cut in two could read as another answer). Extraction runs on the event loop, between every
    other problem's calls: bounding what it reads bounds its work whatever a backend sends (and every scan
    here is linear besides)."""
    if len(text) <= MAX_EXAMINED:
        return text
    tail = text[-MAX_EXAMINED:]
    cut = tail.find("\n")
    return tail[cut + 1:] if cut != -1 else tail


class BaseTask:
    """A task's optional powers with their defaults, in one place: the built-in tasks inherit them, and
    `as_task` gives agent code's own task (any object with the protocol's methods) the same, so the
    search and the meter ask `task.validate(q)` or `task.needs_reference` and never probe with getattr."""

    name = "task"
    instructions = "Finish with the final answer written as \\boxed{ANSWER}."
    answer_max_tokens = 512  # completion cap of an answer or refine step (SearchConfig.answer_max_tokens overrides)
    exemplars: tuple[tuple[str, str], ...] = ()  # worked examples for 'example' trees (never a benchmark's test items)
    needs_reference = True  # False: `grade` judges an answer alone (Game of 24), so a problem without a reference is graded
    shuffle: Any = None  # (question, rng) -> reordered question or None; None here: the premises of a word problem

    def validate(self, question: str) -> str | None:
        """Why this task cannot judge the question (refused before any call), or None."""
        return None

    def rule_check(self, question: str, text: str) -> bool | None:
        return None


class _Adapted(BaseTask):
    """Agent code's own task object, with the defaults of what it does not define."""

    def __init__(self, task: Any):
        self._task = task
        self.name = getattr(task, "name", type(task).__name__)

    def __getattribute__(self, attr: str) -> Any:
        if attr.startswith("_") or attr == "name":
            return object.__getattribute__(self, attr)
        own = object.__getattribute__(self, "_task")
        if hasattr(own, attr):
            return getattr(own, attr)
        return object.__getattribute__(self, attr)


def as_task(task: Any) -> BaseTask:
    """The task with every optional power answered: itself if it is a BaseTask, else an adapter."""
    return task if isinstance(task, BaseTask) else _Adapted(task)


def extract_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}), braces balanced."""
    text = examined(text)
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    i = starts[-1]
    depth, j = 1, i
    while j < len(text) and depth:
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
        j += 1
    if depth:
        return None
    return text[i : j - 1].strip()


NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*\**\s*([^\n]*)", re.I)


def _clean_number(s: str) -> str | None:
    s = s.replace("$", "").replace(",", "").strip().rstrip(".")
    try:
        f = Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def extract_number(text: str) -> str | None:
    """A number from a weak model's text: \\boxed{}, then 'The answer is ...', then the last number."""
    text = examined(text)
    boxed = extract_boxed(text)
    if boxed is not None:
        m = NUMBER.search(boxed.replace("\\$", "").replace("\\!", ""))
        if m and (n := _clean_number(m.group())) is not None:
            return n
    found = ANSWER_IS.findall(text)
    if found:
        phrase = found[-1].split("=")[-1]  # "the answer is 2 + 7 = 9": the result, not the first operand
        m = NUMBER.search(phrase)
        if m and (n := _clean_number(m.group())) is not None:
            return n
    nums = NUMBER.findall(text)
    for cand in reversed(nums):
        if (n := _clean_number(cand)) is not None:
            return n
    return None


def final_answer(task: "Task", text: str, truncated: bool) -> str | None:
    """The task's answer from a completion; None when it was cut off (max_tokens) before a \\boxed{}
    answer, so a stray last number of unfinished work never votes."""
    text = examined(text)  # a task brought by agent code is held to the same bound
    if truncated and extract_boxed(text) is None:
        return None
    return task.extract(text)


def numbers_equal(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return Fraction(a.replace(",", "")) == Fraction(b.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return False
