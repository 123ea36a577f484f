"""Prompt templates for every role the search uses.

Each prompt starts with the same system message and the `Question:` block, so a server with
prefix caching (vLLM, SGLang, llama.cpp) reuses that prefix across all calls on one problem;
what varies (the draft, the critique, the candidates) comes after it.

The section headers ("Question:", "Draft answer:", "Critique:", "Answer to grade:",
"Candidate K:") are part of the contract with `fot.sim`, which reads them to play its part.
"""

from __future__ import annotations

SYSTEM = (
    "You are a careful problem solver. Reason step by step and finish with the final answer "
    "written as \\boxed{ANSWER}."
)

DUMMY_ANSWERS = (
    "I don't know how to solve this problem.",
    "I can't understand this question.",
    "I'm not sure about the answer.",
)

ROLES = ("answer", "critique", "refine", "evaluate", "expert", "rephrase")

LOW_CONFIDENCE = "The draft was written with low confidence; some step is likely wrong. Recheck every step."
BROKE_RULE = "The draft breaks the task's rules (for example a number used twice, or a result that is not the target)."


def _msgs(user: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def answer(question: str, hint: str = "", instructions: str = "") -> list[dict]:
    extra = f"\n\n{hint}" if hint else ""
    how = f" {instructions}" if instructions else ""
    return _msgs(f"Question: {question}{extra}\n\nSolve the question step by step.{how}")


def critique(question: str, draft: str) -> list[dict]:
    return _msgs(
        f"Question: {question}\n\nDraft answer:\n{draft}\n\n"
        "Critique the draft strictly: point out every flaw in its reasoning and arithmetic."
    )


def refine(question: str, draft: str, feedback: str, instructions: str = "") -> list[dict]:
    how = f" {instructions}" if instructions else ""
    return _msgs(
        f"Question: {question}\n\nDraft answer:\n{draft}\n\nCritique:\n{feedback}\n\n"
        f"Rewrite the answer, fixing the flaws the critique found.{how}"
    )


def evaluate(question: str, candidate: str) -> list[dict]:
    """Analysis first, then the score (as the official MCTSr reward prompt): a score written after
    checking the work means more than one written before it, and the fixed last line is parsed strictly."""
    return _msgs(
        f"Question: {question}\n\nAnswer to grade:\n{candidate}\n\n"
        "Grade the answer as a strict critic. First check its reasoning and arithmetic step by step "
        "and point out every flaw, in a few sentences. Then end with one last line 'Score: N' where N "
        "is an integer from -100 (certainly wrong) to 100 (certainly right). Never give full marks lightly."
    )


def expert(question: str, candidates: list[str]) -> list[dict]:
    body = "\n\n".join(f"Candidate {i + 1}:\n{c}" for i, c in enumerate(candidates))
    return _msgs(
        f"Question: {question}\n\n{body}\n\n"
        "The candidates disagree. Compare their reasoning and reply with one line 'Best: K' "
        "naming the candidate that is correct."
    )


def rephrase(question: str) -> list[dict]:
    return _msgs(f"Question: {question}\n\nRephrase the question in your own words without solving it.")
