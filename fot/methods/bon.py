"""Best-of-N: the sample that the forest's own verifier scores highest."""

from __future__ import annotations

from .base import SAMPLE_SETTINGS
from .sampling import Sampling


class BestOfN(Sampling):
    name = "bon"
    summary = "the best of --samples samples by the same verifier"

    def recorded(self) -> tuple[str, ...]:
        return (*SAMPLE_SETTINGS, "verifier", "reward_samples", "eval_max_tokens", "full_score", "full_score_penalty")
