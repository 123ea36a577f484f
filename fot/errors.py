"""The one exception tree: everything fot raises on purpose is a `FotError`.

Agent code can catch `FotError` and branch on the class (or on `Result.error_kind`, the same
words, when it asked for results instead of exceptions):

    FotError
     +-- InputError           bad problem file or question       kind "input"
     |    +-- UsageError      a bad argument or setting (library or command line)
     +-- BudgetExhausted      not even a minimal call is funded  kind "budget"   (fot.backend.budget)
     +-- LLMError             a call failed after its retries    kind "backend"  (status, retry_after)
     +-- BackendUnreachable   no backend answers at start        kind "backend"
     +-- EnvironmentFailure   the run's own disk/output/trace    kind "environment": stops the run
     +-- SolveError           Engine.solve(raise_errors=True) on a problem that ended in an error

An environment failure is never recorded as a finished problem: a rerun must redo the problem, so
the engine raises it instead of writing it into a result.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"  # here, at the bottom, so any layer can record it (fot.__version__ re-exports it)

ERROR_KINDS = ("input", "budget", "backend", "environment", "cancelled", "no_answer", "internal")


class FotError(Exception):
    """Base of every error fot raises on purpose."""

    kind = "internal"


class InputError(FotError, ValueError):
    kind = "input"


class UsageError(InputError):
    """A bad argument or setting from the caller: an unknown method, a negative budget, no backend.
    A ValueError too, so code that caught ValueError before keeps working."""


class EnvironmentFailure(FotError):
    """The disk, the output file or the trace failed: not the problem's fault, so not its result."""

    kind = "environment"

    def __init__(self, what: str, exc: OSError | None = None):
        self.what = what
        detail = (exc.strerror or str(exc)) if exc is not None else ""
        super().__init__(f"{what}: {detail}" if detail else what)


class LLMError(FotError):
    """A call that failed after its retries (or was not retryable). `kind` is the failure's own word
    (rate_limit, server, timeout, connection, malformed, not_completion, refused, client, context); `status` and
    `retry_after` are the backend's when it sent them."""

    def __init__(self, kind: str, message: str, record: Any = None, *, status: int | None = None,
                 retry_after: float | None = None, attempts: int = 0):
        self.kind = kind
        self.record = record
        self.status = status
        self.retry_after = retry_after
        self.attempts = attempts
        super().__init__(f"{kind}: {message}")


class BackendUnreachable(FotError, RuntimeError):
    kind = "backend"


class SolveError(FotError):
    """A problem ended in an error and the caller asked for an exception; `result` holds what was
    done and spent, `kind` is one of ERROR_KINDS."""

    def __init__(self, result: Any):
        self.result = result
        self.kind = result.error_kind
        super().__init__(f"problem '{result.id}' failed ({result.error_kind}): {result.error}")


def error_kind(exc: BaseException) -> str:
    """The ERROR_KINDS word for an exception that ended a problem."""
    if isinstance(exc, LLMError):
        return "backend"
    if isinstance(exc, FotError):
        return exc.kind
    if isinstance(exc, BaseException) and type(exc).__name__ == "CancelledError":
        return "cancelled"
    return "internal"
