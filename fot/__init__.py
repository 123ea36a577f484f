"""fot: a Forest-of-Thought reasoning engine for any OpenAI-compatible backend."""

from .budget import Budget, BudgetExhausted, Price, Reservation
from .config import SearchConfig
from .engine import Engine, Result
from .errors import BackendUnreachable, EnvironmentFailure, FotError, InputError, LLMError, SolveError
from .ledger import CallRecord, CallTag, Ledger, Totals
from .llm import Choice, Completion, LLMClient
from .policies import UNSET, Decision, DecisionRule, InputKind, Scores, TreeInput, Verifier, Vote
from .problems import Problem, ProblemFileError, load_problems

__all__ = ["UNSET", "BackendUnreachable", "Budget", "BudgetExhausted", "CallRecord", "CallTag", "Choice",
           "Completion", "Decision", "DecisionRule", "Engine", "EnvironmentFailure", "FotError", "InputError",
           "InputKind", "Ledger", "LLMClient", "LLMError", "load_problems", "Price", "Problem",
           "ProblemFileError", "Reservation", "Result", "Scores", "SearchConfig", "SolveError", "Totals",
           "TreeInput", "Verifier", "Vote"]
__version__ = "0.1.0"
