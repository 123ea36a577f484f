"""One configuration dataclass for the whole search; every constant of MCTSr and FoT is here.

The pluggable rules (tree inputs, verifier, decision rule) are named by key and checked against
their registries (fot/inputs.py, fot/verifiers.py, fot/decision.py). Settings are plain data, so
this module imports nothing of fot at its top but the exception tree: a config can be built (and
read by the command line) without loading the search or the HTTP client. The registries are
looked up when a config is made, to refuse an unknown key at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import UsageError


class _Unset:
    """'Not set', where None is a legal value (e.g. `logprob_threshold=None` turns self-correction off)."""

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


@dataclass(frozen=True)
class SearchConfig:
    trees: int = 4
    rollouts: int = 8

    # MCTSr (Zhang et al. 2024)
    c: float = 1.4  # UCT exploration constant (rewards are on a -100..100 scale, so UCT is close to greedy on Q)
    eps: float = 1e-5  # UCT: keeps the bonus of a node with no readable evaluation finite
    max_children: int = 3
    reward_samples: int = 3  # k self-evaluation samples per new node
    full_score: float = 95.0  # self-evaluation scores >= this are suppressed ...
    full_score_penalty: float = 50.0  # ... by subtracting this
    rescore_selected: bool = True  # one more reward sample of the selected node, alongside its critique
    answer_max_tokens: int | None = None  # None: the task's own cap (Task.answer_max_tokens; 512 if it has none)
    critique_max_tokens: int = 384
    eval_max_tokens: int = 192  # room for the analysis before the score line
    min_tokens: int = 16  # a call that cannot get this many completion tokens is not made

    # Forest (Bi et al. 2025)
    inputs: tuple[str, ...] = ("raw", "rephrase", "shuffle", "example")  # cycled over trees
    temperatures: tuple[float, ...] = (0.7, 1.0)  # cycled over trees
    seed: int = 0
    activation_threshold: float = 0.0  # sparse activation: trees whose best Q is below do not vote
    majority: float = 0.5  # a decision by vote needs more than this share of the active trees
    decision: str = "majority_first"  # a key of fot.decision.DECISION_RULES
    tie_break: str = "expert"  # no decision by vote: "expert" (an LLM call compares candidates) or "q" (the rule's fallback)
    logprob_threshold: float | None = -1.5  # regenerate a step whose mean token log-prob is lower
    max_corrections: int = 1  # regenerations per step (log-prob or rule check)
    early_stop: bool = False  # cancel the other trees once their votes could no longer change the decision
    verifier: str = "auto"  # a key of fot.verifiers.VERIFIERS: auto | self | rule | reward_model
    expert_max_tokens: int = 256
    decision_reserve: float = 0.05  # share of a problem budget kept for the expert decision
    tree_budget: int | None = None  # tokens per tree, the same at any forest size (the problem budget stays the
    # outer cap); None: each tree gets an equal share of the problem budget, which depends on the number of trees
    max_consecutive_failures: int = 2  # a tree stops after this many failed rollouts in a row

    def __post_init__(self) -> None:
        checks = {
            "trees": self.trees >= 1, "rollouts": self.rollouts >= 0, "c": self.c >= 0, "eps": self.eps > 0,
            "max_children": self.max_children >= 1, "reward_samples": self.reward_samples >= 1,
            "answer_max_tokens": self.answer_max_tokens is None or self.answer_max_tokens >= 1,
            "eval_max_tokens": self.eval_max_tokens >= 1, "inputs": bool(self.inputs),
            "temperatures": bool(self.temperatures), "majority": 0 <= self.majority < 1,
            "max_corrections": self.max_corrections >= 0, "tree_budget": self.tree_budget is None or self.tree_budget >= 1, "decision_reserve": 0 <= self.decision_reserve < 1,
            "tie_break": self.tie_break in ("expert", "q"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise UsageError(f"invalid search setting(s): {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")
        from .decision import DECISION_RULES  # the registries, at use: see the module's docstring
        from .inputs import INPUT_KINDS
        from .verifiers import VERIFIERS

        for key, value, registry in (("verifier", (self.verifier,), VERIFIERS), ("decision", (self.decision,), DECISION_RULES),
                                     ("inputs", tuple(self.inputs), INPUT_KINDS)):
            unknown = sorted(set(value) - set(registry))
            if unknown:
                raise UsageError(f"unknown {key} {', '.join(map(repr, unknown))}; known: {', '.join(registry)}")

    def answer_cap(self, task) -> int:
        """Completion cap of an answer or refine step: this setting, else the task's own, else 512."""
        return self.answer_max_tokens or task.answer_max_tokens

    def with_(self, **overrides) -> "SearchConfig":
        """A copy with the given settings changed; UNSET leaves a setting alone (None is a value)."""
        names = {f.name for f in fields(self)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown search settings: {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not UNSET})
