"""A SIMULATED process reward model (a test double, never a model's numbers), in vLLM's `/pooling` shape.

The request is a chat whose assistant message is the solution's steps, each ended by the step token
`<extra_0>` (as vLLM's docs feed Qwen2.5-Math-PRM); the reply has one row per step, [p_wrong, p_right]:
`{"data": [{"index": 0, "data": [[0.2, 0.8], ...]}], "usage": {"prompt_tokens": N, ...}}`. Whether the
solution is right is the simulator's own truth for the question (the reference never travels in the
request). Each step's logit is drawn around +d/2 (a right solution) or -d/2 (a wrong one) with s.d. 1,
d set so that one step's AUROC against correctness is the profile's verifier AUROC (`eval_auroc`, the
same informativeness knob the self-evaluation has): eval_auroc=0.5 is a reward model that says nothing.
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist
from typing import TYPE_CHECKING

from aiohttp import web

from .solver import extract_answer, same_answer, sim_tokens, stable_hash

if TYPE_CHECKING:
    from .server import SimBackend

STEP = "<extra_0>"


def add_reward_routes(app: web.Application, backend: "SimBackend") -> None:
    async def pooling(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            messages = body["messages"]
            question = next(m["content"] for m in messages if m.get("role") == "user")
            solution = next(m["content"] for m in messages if m.get("role") == "assistant")
        except (ValueError, KeyError, StopIteration, TypeError):
            return web.json_response({"error": {"message": "expected messages with a user question and an "
                                                           "assistant solution", "type": "invalid_request"}},
                                     status=400)
        solver = backend.solver
        steps = [s for s in solution.split(STEP) if s.strip()] or [solution]
        right = same_answer(extract_answer(steps[-1]) or extract_answer(solution), solver.truth(question))
        auroc = min(max(solver.profile.verifier_auroc, 1e-6), 1 - 1e-6)
        d = math.sqrt(2) * NormalDist().inv_cdf(auroc)  # two unit normals d apart: AUROC = Phi(d / sqrt 2)
        rng = random.Random(stable_hash("prm", backend.config.seed, question, solution))
        rows = []
        for _ in steps:
            p = 1 / (1 + math.exp(-rng.gauss(d / 2 if right else -d / 2, 1.0)))
            rows.append([round(1 - p, 6), round(p, 6)])
        n = sum(len(sim_tokens(m.get("content", ""))) for m in messages) + 4 * len(messages)
        return web.json_response({"object": "list", "model": body.get("model", "sim-prm"),
                                  "data": [{"index": 0, "object": "pooling", "data": rows}],
                                  "usage": {"prompt_tokens": n, "completion_tokens": 0, "total_tokens": n}})

    app.router.add_post("/v1/pooling", pooling)
