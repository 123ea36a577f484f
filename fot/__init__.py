"""fot: a Forest-of-Thought reasoning engine for any OpenAI-compatible backend."""

from .budget import Budget, BudgetExhausted, Price, Reservation
from .config import SearchConfig
from .engine import BackendUnreachable, Engine, Result
from .ledger import CallRecord, CallTag, Ledger, Totals
from .llm import Choice, Completion, LLMClient, LLMError
from .policies import UNSET, Decision, DecisionRule, InputKind, Scores, TreeInput, Verifier, Vote
from .problems import Problem, ProblemFileError, load_problems

__all__ = ["UNSET", "BackendUnreachable", "Budget", "BudgetExhausted", "CallRecord", "CallTag", "Choice", "Completion",
           "Decision", "DecisionRule", "Engine", "InputKind", "LLMClient", "LLMError", "Ledger", "Price", "Problem",
           "ProblemFileError", "Reservation", "Result", "Scores", "SearchConfig", "Totals", "TreeInput", "Verifier",
           "Vote", "load_problems"]
__version__ = "0.1.0"
