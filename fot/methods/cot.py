"""One chain-of-thought sample: what a user gets from a single call."""

from __future__ import annotations

from .sampling import Sampling


class ChainOfThought(Sampling):
    name = "cot"
    summary = "one chain-of-thought sample"

    def samples(self, asked: int) -> int:
        return 1
