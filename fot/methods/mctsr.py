"""One MCTSr tree (Zhang et al. 2024): the forest with a single tree, its input raw."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .forest import Forest

if TYPE_CHECKING:
    from ..config import SearchConfig


class OneTree(Forest):
    name = "mctsr"
    summary = "one MCTSr tree"

    def configure(self, cfg: "SearchConfig") -> "SearchConfig":
        return cfg.with_(trees=1)

    def trees(self, cfg: "SearchConfig") -> int:
        return 1
