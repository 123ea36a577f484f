"""Self-consistency (Wang et al. 2023): the most common answer of N independent samples."""

from __future__ import annotations

from .sampling import Sampling


class SelfConsistency(Sampling):
    name = "sc"
    summary = "the majority of --samples samples"
