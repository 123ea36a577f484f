"""fot: a Forest-of-Thought reasoning engine for any OpenAI-compatible backend."""

from .budget import Budget, BudgetExhausted, Price, Reservation
from .ledger import CallRecord, CallTag, Ledger, Totals
from .llm import Choice, Completion, LLMClient, LLMError

__all__ = ["Budget", "BudgetExhausted", "CallRecord", "CallTag", "Choice", "Completion", "LLMClient",
           "LLMError", "Ledger", "Price", "Reservation", "Totals"]
__version__ = "0.1.0"
