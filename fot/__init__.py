"""fot: a Forest-of-Thought reasoning engine for any OpenAI-compatible backend.

The public names load on first use (PEP 562), so `python -m fot.solve` can take Ctrl-C from its
first instant (before the HTTP client has loaded) and exit 130 instead of dying by the signal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "backend.budget": ["Budget", "BudgetExhausted", "Price", "Reservation"],
    "config": ["SearchConfig", "UNSET"],
    "search.decision": ["Decision", "DecisionRule", "Vote"],
    "engine": ["Engine", "Result"],
    "errors": ["BackendUnreachable", "EnvironmentFailure", "FotError", "InputError", "LLMError", "SolveError",
               "UsageError"],
    "backend.ledger": ["CallRecord", "CallTag", "Ledger", "Totals"],
    "backend.llm": ["Choice", "Completion", "LLMClient"],
    "search.inputs": ["InputKind", "TreeInput"],
    "tasks.problems": ["Problem", "ProblemFileError", "load_problems"],
    "runtime": ["tune_gc"],
    "search.verifiers": ["Scores", "Verifier"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF, key=lambda n: (n != "UNSET", n.lower()))
from .errors import __version__  # noqa: E402 -- the errors module loads nothing else

if TYPE_CHECKING:  # for type checkers and editors: the same names, eagerly
    from .backend.budget import Budget, BudgetExhausted, Price, Reservation
    from .config import UNSET, SearchConfig
    from .search.decision import Decision, DecisionRule, Vote
    from .engine import Engine, Result
    from .errors import (BackendUnreachable, EnvironmentFailure, FotError, InputError, LLMError, SolveError,
                         UsageError)
    from .backend.ledger import CallRecord, CallTag, Ledger, Totals
    from .backend.llm import Choice, Completion, LLMClient
    from .search.inputs import InputKind, TreeInput
    from .tasks.problems import Problem, ProblemFileError, load_problems
    from .runtime import tune_gc
    from .search.verifiers import Scores, Verifier


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'fot' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
