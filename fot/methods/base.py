"""What a method is: one class that knows how to run a problem, what that costs at least, which
settings decide its results, how its smaller cells replay, and what it leaves for the viewer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..search import prompts
from ..backend import tokens

if TYPE_CHECKING:
    from ..backend.budget import Budget
    from ..config import SearchConfig
    from ..search.decision import DecisionRule
    from ..backend.llm import LLMClient
    from ..measure.results import Result
    from ..tasks import Task
    from ..search.verifiers import Verifier


@dataclass
class MethodRun:
    """One problem as a method sees it: never its reference answer."""

    question: str
    task: "Task"
    llm: "LLMClient"
    cfg: "SearchConfig"
    budget: "Budget"
    problem_id: str
    samples: int = 8
    verifier: "Verifier | None" = None  # agent code's own objects, else the ones `cfg` names
    decision: "DecisionRule | None" = None
    example_pool: list[tuple[str, str]] | None = None
    reward_llm: "LLMClient | None" = None
    on_tree: Callable[[Any], None] | None = None
    on_rollout: Callable[[Any], None] | None = None


# the settings a tree search's results depend on (recorded for a resume to compare): all of the search's
TREE_SETTINGS = ("trees", "rollouts", "c", "uct_scale", "eps", "max_children", "max_children_rule", "reward_samples", "reward_cache",
                 "dummy_scoring", "full_score", "full_score_penalty",
                 "rescore_selected", "answer_max_tokens", "critique_max_tokens", "eval_max_tokens", "min_tokens",
                 "inputs", "temperatures", "activation_threshold", "sparse_stop", "majority", "decision", "tie_break",
                 "logprob_threshold", "max_corrections", "early_stop", "proof", "verifier", "expert_max_tokens",
                 "decision_reserve", "tree_budget", "max_consecutive_failures")
# a sampling baseline's
SAMPLE_SETTINGS = ("samples", "temperatures", "answer_max_tokens", "min_tokens", "keep_logprobs")


class Method:
    name = ""
    tree_search = False  # it grows trees: rollouts to count, snapshots to replay, a node record for fot.view
    summary = ""  # one line for --help and the docs
    preset = ""  # its name in `fot serve`'s model names (default: `name`)
    preset_sizes: tuple[str, ...] = ()  # what the numbers after it set: fot-4x8 = trees, rollouts

    @property
    def preset_name(self) -> str:
        return self.preset or self.name

    def configure(self, cfg: "SearchConfig") -> "SearchConfig":
        """The config this method runs with (one tree says trees = 1 here, once)."""
        return cfg

    def trees(self, cfg: "SearchConfig") -> int:
        return 0

    def rollouts_per_problem(self, cfg: "SearchConfig") -> int:
        """Rollouts a problem runs at most (the progress bar's unit of work); 0 for a method without trees."""
        return self.trees(cfg) * cfg.rollouts if self.tree_search else 0

    def minimum_budget(self, question: str, task: "Task", cfg: "SearchConfig") -> int:
        """The fewest tokens with which this method gets its first answer: one answer call. Below this
        the engine would send nothing, so it refuses."""
        return first_call(question, task, cfg)

    def settings(self, cfg: "SearchConfig", budget: int | None, names: dict, samples: int) -> dict:
        """What the meter needs to replay this result (the result's `settings`); `names` are the verifier's
        and decision rule's (a registry key, or agent code's own object's name)."""
        return {"seed": cfg.seed, "verifier": names["verifier"], "budget": budget}

    def recorded(self) -> tuple[str, ...]:
        """The run settings its results depend on, beyond method, task, backend, model, budget and seed."""
        return ()

    async def run(self, run: MethodRun, result: "Result") -> "Result":
        """Solve one problem, filling in `result` (answer, text, decision, what the meter and viewer need)."""
        raise NotImplementedError

    def replay(self, row: dict, task: "Task", size: tuple[int, int] | int) -> tuple[str | None, dict, str]:
        """(answer, usage, how) that a smaller run would have returned, from a recorded result row."""
        raise NotImplementedError


def first_call(question: str, task: "Task", cfg: "SearchConfig") -> int:
    return tokens.byte_bound(prompts.answer(question, "", task.instructions)) + cfg.min_tokens


def with_decision_reserve(n: int, cfg: "SearchConfig") -> int:
    """A problem budget whose share per tree (less the decision reserve, split T ways) funds `n`."""
    return math.ceil(n / (1 - cfg.decision_reserve)) + 1  # +1: the share is rounded down
