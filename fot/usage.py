"""Token usage, one shape: what a call, a tree, a sample, the expert or a whole problem spent.

`prompt` + `completion` are what the backend reported (or we counted, when it did not say); `cached` is
the part of the prompt it served from its cache (inside `prompt`, not on top); `unknown` is what calls
whose outcome we could not see were charged at their reservation (an upper bound). `total` is what a
budget counts: prompt + completion + unknown. As JSON: {"prompt", "completion", "cached", "unknown", "total"}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    prompt: int = 0
    completion: int = 0
    cached: int = 0
    unknown: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion + self.unknown

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.prompt + other.prompt, self.completion + other.completion, self.cached + other.cached,
                     self.unknown + other.unknown)

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "completion": self.completion, "cached": self.cached, "unknown": self.unknown,
                "total": self.total}

    @classmethod
    def from_dict(cls, d: Any, total: int | None = None) -> "Usage":
        """From any of the shapes results have used: a usage dict (`unknown` may be missing), a snapshot's or
        a sample's (prompt, completion, cached beside `tokens`, the total): what is over prompt + completion
        in a total is unknown."""
        d = d if isinstance(d, dict) else {}
        prompt, completion, cached = int(d.get("prompt") or 0), int(d.get("completion") or 0), int(d.get("cached") or 0)
        whole = total if total is not None else d.get("total", d.get("tokens"))
        unknown = d.get("unknown")
        if unknown is None:
            unknown = max(0, int(whole) - prompt - completion) if whole is not None else 0
        return cls(prompt, completion, cached, int(unknown))
