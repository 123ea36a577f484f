"""Calling fot from agent code. Run: python examples/agent.py  (starts fot.sim, a SIMULATED backend).

Point it at a real server instead with Engine(base_url="http://host:8000/v1", model="...").
"""

import asyncio

from fot import Engine, Problem
from fot.sim import SimServer


async def main() -> None:
    async with SimServer() as sim, Engine(base_url=sim.base_url, concurrency=32) as engine:
        result = await engine.solve("What is 7 * 8?", task="arith", trees=4, rollouts=4, budget=30_000)
        print(result.answer, result.decision, result.tokens["total"], "tokens")
        problems = [Problem(f"p{i}", f"What is {i} + {i * 3}?") for i in range(5)]
        async for r in engine.solve_many(problems, task="arith", trees=2, rollouts=2, parallel=5):
            print(r.id, r.answer, r.decision, [t["answer"] for t in r.trees])


if __name__ == "__main__":
    asyncio.run(main())
