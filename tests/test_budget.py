"""The budget controller: the hard cap holds at every level, whatever the order of calls."""

import asyncio
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fot import Budget, BudgetExhausted, Price


def test_reserve_clamps_max_tokens_to_what_is_left_then_refuses():
    b = Budget(tokens=1000)
    r = b.try_reserve(prompt_tokens=300, max_tokens=500)
    assert r.max_tokens == 500 and b.reserved_tokens == 800
    b.settle(r, prompt=280, completion=400)
    assert b.spent_tokens == 680 and b.reserved_tokens == 0
    r2 = b.try_reserve(prompt_tokens=200, max_tokens=500)
    assert r2.max_tokens == 120  # 1000 - 680 - 200
    b.settle(r2, 200, 120)
    with pytest.raises(BudgetExhausted) as info:
        b.try_reserve(prompt_tokens=1, max_tokens=10)
    assert info.value.available == 0
    assert b.spent_tokens == 1000


def test_min_tokens_refuses_a_call_too_small_to_be_useful():
    b = Budget(tokens=100)
    with pytest.raises(BudgetExhausted):
        b.try_reserve(prompt_tokens=90, max_tokens=50, min_tokens=16)
    assert b.try_reserve(prompt_tokens=90, max_tokens=50, min_tokens=8).max_tokens == 10


def test_n_choices_share_the_completion_room():
    b = Budget(tokens=1000)
    r = b.try_reserve(prompt_tokens=200, max_tokens=500, n=4)
    assert r.max_tokens == 200 and r.tokens == 1000


def test_a_child_never_exceeds_its_parent_nor_its_own_share():
    run = Budget(tokens=1000, name="run")
    p1 = run.child(tokens=800, name="p1")
    p2 = run.child(tokens=800, name="p2")
    t = p1.child(tokens=300, name="p1/t0")
    r = t.try_reserve(100, 500)
    assert r.max_tokens == 200  # the tree share binds
    t.settle(r, 100, 200)
    r = p2.try_reserve(100, 800)
    assert r.max_tokens == 600  # the run binds: 1000 - 300 - 100
    p2.settle(r, 100, 600)
    assert run.spent_tokens == 1000 and p1.spent_tokens == 300 and p2.spent_tokens == 700
    with pytest.raises(BudgetExhausted):
        p1.try_reserve(1, 1)


def test_dollar_cap_with_price_table():
    price = Price(input=1.0, output=4.0, cached_input=0.25)
    assert price.cost(1_000_000, 0) == pytest.approx(1.0)
    assert price.cost(1_000_000, 1_000_000, cached=500_000) == pytest.approx(0.5 + 0.125 + 4.0)
    b = Budget(usd=0.01, price=price)
    r = b.try_reserve(prompt_tokens=2000, max_tokens=10_000)
    # 0.01 $ - 2000 * 1e-6 $ leaves 0.008 $ = 2000 output tokens at 4 $/M
    assert r.max_tokens == 2000
    b.settle(r, 2000, 2000, cached=1000)
    assert b.spent.usd == pytest.approx((1000 * 1.0 + 1000 * 0.25 + 2000 * 4.0) / 1e6)
    with pytest.raises(ValueError):
        Budget(usd=1.0)  # a dollar cap without prices is a mistake


def test_negative_caps_are_refused():
    with pytest.raises(ValueError):
        Budget(tokens=-1)


async def test_a_tight_reserve_waits_for_outstanding_calls_instead_of_clamping():
    b = Budget(tokens=1000)
    first = await b.reserve(100, 600)  # holds 700
    waiter = asyncio.create_task(b.reserve(100, 600))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    b.settle(first, 100, 50)  # gives 550 back
    second = await asyncio.wait_for(waiter, 1.0)
    assert second.max_tokens == 600


# -- property tests: the guarantee under random orders -------------------------------------------

def _tree(rng: random.Random, caps: list[int]) -> list[Budget]:
    root = Budget(tokens=caps[0], name="run")
    nodes = [root]
    for i, cap in enumerate(caps[1:]):
        parent = rng.choice(nodes)
        nodes.append(parent.child(tokens=cap, name=f"n{i}"))
    return nodes


def _check(nodes: list[Budget]) -> None:
    for b in nodes:
        assert b.spent_tokens <= b.tokens, b.name
        assert b.spent_tokens + b.reserved_tokens <= b.tokens, b.name
        assert b.overrun_tokens == 0


@settings(max_examples=300, deadline=None)
@given(caps=st.lists(st.integers(0, 5000), min_size=1, max_size=6),
       ops=st.lists(st.tuples(st.integers(0, 100), st.integers(0, 3000), st.integers(1, 2000), st.integers(1, 4),
                              st.floats(0, 1)), max_size=80),
       seed=st.integers(0, 2**32))
def test_invariant_under_random_interleavings_of_reserve_and_settle(caps, ops, seed):
    rng = random.Random(seed)
    nodes = _tree(rng, caps)
    open_res = []
    for pick, prompt, max_tokens, n, frac in ops:
        if open_res and pick % 3 == 0:  # settle a random outstanding call to a real usage <= its reservation
            res = open_res.pop(pick % len(open_res))
            real_prompt = int(res.prompt_tokens * frac)
            real_completion = int(res.n * res.max_tokens * (1 - frac / 2))
            res.budget.settle(res, real_prompt, real_completion)
        else:
            leaf = nodes[pick % len(nodes)]
            try:
                res = leaf.try_reserve(prompt, max_tokens, n=n)
            except BudgetExhausted:
                continue
            if res is not None:
                assert res.max_tokens <= max_tokens and res.tokens == prompt + n * res.max_tokens
                open_res.append(res)
        _check(nodes)
    for res in open_res:
        res.budget.settle(res, res.prompt_tokens, res.tokens - res.prompt_tokens)
    _check(nodes)
    for b in nodes:
        assert b.reserved_tokens == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(caps=st.lists(st.integers(200, 4000), min_size=1, max_size=5),
       workers=st.integers(1, 24), seed=st.integers(0, 2**32))
def test_guarantee_with_concurrent_callers(caps, workers, seed):
    rng = random.Random(seed)
    nodes = _tree(rng, caps)
    settled_real: list[int] = []

    async def worker(i: int) -> None:
        leaf = nodes[rng.randrange(len(nodes))]
        while True:
            try:
                res = await leaf.reserve(rng.randint(5, 150), rng.randint(1, 400), n=rng.randint(1, 3))
            except BudgetExhausted:
                return
            await asyncio.sleep(rng.random() * 0.002)
            _check(nodes)
            real_p = rng.randint(0, res.prompt_tokens)
            real_c = rng.randint(0, res.tokens - res.prompt_tokens)
            if rng.random() < 0.1:
                real_p = real_c = 0  # a failed call that charged nothing
            settled_real.append(real_p + real_c)
            res.budget.settle(res, real_p, real_c)
            if real_p + real_c == 0 and rng.random() < 0.5:
                return

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(workers))), timeout=30)

    asyncio.run(main())
    _check(nodes)
    root = nodes[0]
    assert sum(settled_real) == root.spent_tokens <= root.tokens
    assert all(b.reserved_tokens == 0 for b in nodes)
