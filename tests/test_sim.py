"""fot.sim, the simulated backend (a test double): reproducible, of known skill, with latency and capacity."""

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request

import openai

from fot.local import free_port

from fot import LLMClient, prompts
from fot.sim import SimProfile, SimSolver, arithmetic_truth
from fot.sim.solver import Request, extract_answer, normalize_question, same_answer


def test_arithmetic_truth():
    assert arithmetic_truth("What is 7 + 8?") == "15"
    assert arithmetic_truth("Compute 3 * (4 - 6).") == "-6"
    assert arithmetic_truth("What is 7 / 2?") == "7/2"
    assert arithmetic_truth("What is the capital of France?") is None


def _first_answers(solver: SimSolver, questions: list[str], seed: int | None = None) -> list[bool]:
    out = []
    for q in questions:
        o = solver.respond(Request(prompts.answer(q), seed=seed, temperature=1.0, occurrence=0), 0)
        out.append(same_answer(extract_answer(o.text), arithmetic_truth(q)))
        assert o.right == out[-1]
    return out


def test_first_answer_skill_matches_the_profile():
    qs = [f"What is {a} * {b} + {c}?" for a in range(10) for b in range(10) for c in range(4)]
    solver = SimSolver(SimProfile(p_first=0.3, hardness_sd=0.0, tree_sd=0.0), seed=1)
    rate = sum(_first_answers(solver, qs)) / len(qs)
    assert abs(rate - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(qs))


def test_errors_correlate_within_a_problem_not_across_tree_inputs():
    """Hardness makes one problem's trees agree more than chance; tree inputs are independent."""
    qs = [f"What is {a} + {b} * 3?" for a in range(12) for b in range(5)]
    hard = SimSolver(SimProfile(p_first=0.5, hardness_sd=2.5, tree_sd=0.0), seed=3)
    flat = SimSolver(SimProfile(p_first=0.5, hardness_sd=0.0, tree_sd=0.0), seed=3)

    def extreme_share(solver: SimSolver) -> float:
        counts = [sum(_first_answers(solver, [q], seed=s)[0] for s in range(8)) for q in qs]
        return sum(1 for k in counts if k in (0, 1, 7, 8)) / len(counts)

    # a binomial(8, 0.5) count is this extreme only 7% of the time
    assert extreme_share(hard) > 0.45
    assert extreme_share(flat) < 0.25


def test_self_evaluation_is_a_verifier_of_known_quality():
    solver = SimSolver(SimProfile(eval_right=(60, 10), eval_wrong=(-20, 10)), seed=0)
    right = solver.respond(Request(prompts.evaluate("What is 2 + 2?", "so \\boxed{4}"), None, 1.0, 0), 0).text
    wrong = solver.respond(Request(prompts.evaluate("What is 2 + 2?", "so \\boxed{5}"), None, 1.0, 0), 0).text
    score = lambda t: int(t.rsplit("Score:", 1)[1])  # noqa: E731
    assert score(right) > 20 and score(wrong) < 20


def test_problems_with_references_are_found_even_with_premises_shuffled():
    q = "Tom has 3 apples. He buys 4 more. How many apples does he have?"
    solver = SimSolver(problems={normalize_question(q): "7"})
    assert solver.truth(q) == "7"
    assert solver.truth("He buys 4 more. Tom has 3 apples. How many apples does he have?") == "7"
    assert SimSolver.question_of(prompts.answer("In other words: " + q)[1]["content"]) == q


async def test_same_seed_same_outputs(make_sim):
    a = await make_sim(seed=5)
    b = await make_sim(seed=5)
    texts = []
    for sim in (a, b):
        async with LLMClient(sim.base_url, "fot-sim") as llm:
            c = await llm.chat(prompts.answer("What is 9 * 9?"), n=3, temperature=1.0)
            texts.append(c.texts)
    assert texts[0] == texts[1]


async def test_capacity_queues_requests_and_counts_busy_time(make_sim):
    sim = await make_sim(ttft_s=0.1, capacity=2)
    async with LLMClient(sim.base_url, "fot-sim", concurrency=16) as llm:
        await asyncio.gather(*(llm.chat(prompts.answer(f"What is {i} + 2?")) for i in range(6)))
    assert sim.stats.max_in_flight == 2 and sim.stats.requests == 6  # 6 requests, 2 at a time
    assert sim.stats.busy_slot_s >= 0.6  # 0.1 s each, at least (a busy machine only adds)


async def test_decode_rate_sets_latency(make_sim):
    sim = await make_sim(decode_tps=1000.0, profile=SimProfile(answer_tokens=200))
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        t0 = time.monotonic()
        c = await llm.chat(prompts.answer("What is 1 + 2?"))
        wall = time.monotonic() - t0
    assert wall >= c.record.completion_tokens / 1000.0 * 0.9



def test_command_line_server_serves_and_stops_on_sigint(tmp_path):
    port = free_port()
    probs = tmp_path / "p.jsonl"
    probs.write_text('{"id": "a", "question": "Name the colour of the sky.", "answer": "blue"}\n')
    proc = subprocess.Popen([sys.executable, "-m", "fot.sim", "--port", str(port), "--problems", str(probs),
                             "--p-first", "1.0", "--hardness-sd", "0", "--tree-sd", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1) as r:
                    assert b"fot-sim" in r.read()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        resp = client.chat.completions.create(model="fot-sim", messages=prompts.answer("Name the colour of the sky."))
        assert "\\boxed{blue}" in resp.choices[0].message.content
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "SIMULATED" in out


def test_command_line_server_rejects_a_bad_problem_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n{"problem": 3.5, "answer": [1]}\n')
    proc = subprocess.run([sys.executable, "-m", "fot.sim", "--problems", str(bad)], capture_output=True, text=True,
                          timeout=30, env={**os.environ})
    assert proc.returncode == 2
    assert f"{bad}:2: field 'answer'" in proc.stderr
