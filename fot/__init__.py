"""fot: a Forest-of-Thought reasoning engine for any OpenAI-compatible backend."""

from .budget import Budget, BudgetExhausted, Price, Reservation
from .config import SearchConfig
from .engine import BackendUnreachable, Engine, Result
from .ledger import CallRecord, CallTag, Ledger, Totals
from .llm import Choice, Completion, LLMClient, LLMError
from .problems import Problem, ProblemFileError, load_problems

__all__ = ["BackendUnreachable", "Budget", "BudgetExhausted", "CallRecord", "CallTag", "Choice", "Completion",
           "Engine", "LLMClient", "LLMError", "Ledger", "Price", "Problem", "ProblemFileError", "Reservation",
           "Result", "SearchConfig", "Totals", "load_problems"]
__version__ = "0.1.0"
