"""The forest (Bi et al. 2025): several MCTSr trees with diverse inputs, concurrently, that vote
(fot/search/forest.py runs it; fot/search/decision.py decides it)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from .base import TREE_SETTINGS, Method, MethodRun, first_call, with_decision_reserve

if TYPE_CHECKING:
    from ..config import SearchConfig
    from ..measure.results import Result
    from ..tasks import Task


class Forest(Method):
    name = "forest"
    tree_search = True
    summary = "several MCTSr trees that vote (the default)"
    preset, preset_sizes = "fot", ("trees", "rollouts")

    def trees(self, cfg: "SearchConfig") -> int:
        return cfg.trees

    def minimum_budget(self, question: str, task: "Task", cfg: "SearchConfig") -> int:
        """A first answer from every tree: each tree's share is its allowance (the problem budget less
        the decision reserve, split T ways), unless `tree_budget` gives each its own."""
        one = first_call(question, task, cfg)
        if cfg.tree_budget is not None:
            return cfg.trees * one
        return with_decision_reserve(cfg.trees * one, cfg)

    def settings(self, cfg: "SearchConfig", budget: int | None, names: dict, samples: int) -> dict:
        return {"trees": cfg.trees, "rollouts": cfg.rollouts, "activation_threshold": cfg.activation_threshold,
                "majority": cfg.majority, "tie_break": cfg.tie_break, "early_stop": cfg.early_stop, "proof": cfg.proof, "seed": cfg.seed,
                "decision": names["decision"], "verifier": names["verifier"], "budget": budget,
                "tree_budget": cfg.tree_budget,
                "tree_allowance": "per_tree" if cfg.tree_budget is not None else ("share" if budget else "none")}

    def recorded(self) -> tuple[str, ...]:
        return TREE_SETTINGS

    async def run(self, run: MethodRun, result: "Result") -> "Result":
        from ..search.forest import run_forest

        fr = await run_forest(run.question, run.task, run.llm, run.cfg, run.budget, run.problem_id,
                              verifier=run.verifier, decision=run.decision, example_pool=run.example_pool,
                              reward_llm=run.reward_llm, on_tree=run.on_tree, on_rollout=run.on_rollout)
        r = result
        r.answer, r.text, r.decision = fr.answer, fr.text, fr.decision.how
        r.trees = [{"index": t.index, "input": t.input_kind, "input_note": t.input_note, "question": t.question,
                    "hint": t.hint, "temperature": t.temperature, "answer": t.answer, "q": t.q,
                    "rollouts": t.rollouts_done, "nodes": t.nodes, "depth": t.depth, "corrections": t.corrections,
                    "eval_asked": t.eval_asked, "eval_parsed": t.eval_parsed, "eval_cached": t.eval_cached,
                    "stopped": t.stopped, "rollouts_saved": t.rollouts_saved, "proven": t.proven, "roles": t.roles, "tokens": t.tokens, "error": t.error} for t in fr.trees]
        roles: dict[str, int] = {}
        for t in fr.trees:
            for k, v in t.roles.items():
                roles[k] = roles.get(k, 0) + v
        if fr.expert_tokens:
            roles["expert"] = roles.get("expert", 0) + fr.expert_tokens
        r.roles = roles
        r.stop = {"reason": fr.stop_reason, "cancelled_calls": fr.cancelled_calls,
                  "inactive_trees": sum(t.stopped == "inactive" for t in fr.trees),
                  "rollouts_saved": sum(t.rollouts_saved for t in fr.trees)}
        r.snapshots = [[asdict(s) for s in t.snapshots] for t in fr.trees]
        r.forest = [{"index": t.index, "input": t.input_kind, "question": t.question, "hint": t.hint,
                     "temperature": t.temperature, "answer": t.answer, "q": t.q, "best": t.best, "stopped": t.stopped,
                     "nodes": t.node_records} for t in fr.trees]
        r.evaluation = {"asked": sum(t.eval_asked for t in fr.trees), "parsed": sum(t.eval_parsed for t in fr.trees)}
        r.expert_tokens, r.expert_usage = fr.expert_tokens, fr.expert_usage
        r.early_stopped, r.budget_bound = fr.early_stopped, fr.budget_bound
        r.answers_seen = distinct((a for t in fr.trees for a in t.answers_seen), run.task, r.question)
        r.failures = [t.failure for t in fr.trees if t.failure is not None]
        if fr.answer is None and not r.error:
            r.error = "; ".join(fr.errors) or "no tree produced an answer"
            stops = {t.stopped for t in fr.trees}
            r.error_kind = "backend" if "errors" in stops else "budget" if "budget" in stops else \
                "cancelled" if "cancelled" in stops else "no_answer"
        return r

    def replay(self, row: dict, task: "Task", size: tuple[int, int] | int) -> tuple[str | None, dict, str]:
        from ..measure.meter import replay

        t, r = size if isinstance(size, tuple) else (size, row.get("settings", {}).get("rollouts", 0))
        return replay(row, task, t, r)


def distinct(answers, task: "Task", question: str) -> list[str]:
    """Every distinct answer (by the task's equivalence), in the order first seen."""
    seen: list[str] = []
    for a in answers:
        if not any(task.equivalent(a, b, question) for b in seen):
            seen.append(a)
    return seen
