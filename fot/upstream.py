"""The upstream a command runs against, started once for `fot.solve` and `fot serve` alike: the simulator
(`--sim`), the servers given (`--base-url`), or the embedded local model; and what each implies.

The embedded model's quirks live here and nowhere else: its search preset (a 2x1 forest, one reward
sample, a short self-evaluation: measured, docs/local.md), its context window, its concurrency (its slot
count: a problem's samples or a forest's trees decode together) and the largest `n` it takes (the same).
"""

from __future__ import annotations

import dataclasses
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Callable

from .backend.budget import Price
from .backend.endpoints import public_url
from .config import BackendSettings, SearchConfig
from .errors import FotError
from .tasks.problems import Problem

# what a forest runs with when the command line does not say: the papers' cell, or the embedded model's
DEFAULT_PRESET = {"trees": 4, "rollouts": 8, "reward_samples": 1, "eval_max_tokens": 192}
# Measured on 150 problems (docs/local.md): on the 135M model, 8 plain samples by majority did at least as well
# as the 2x1 forest at a third of its tokens (it cannot write a readable self-evaluation); a forest asked for
# gets the measured 2x1 cell, which finishes in minutes, not hours, on 2 cores.
EMBEDDED_PRESET = {"trees": 2, "rollouts": 1, "reward_samples": 1, "eval_max_tokens": 96}
EMBEDDED_METHOD = "sc"


def kind_of(b: BackendSettings) -> str:
    """sim | server | embedded: which upstream these settings start (known before anything starts)."""
    return "sim" if b.sim else "server" if b.base_url else "embedded"


def preset_of(b: BackendSettings) -> dict:
    return EMBEDDED_PRESET if kind_of(b) == "embedded" else DEFAULT_PRESET


def search_config(b: BackendSettings, given: dict) -> SearchConfig:
    """The search settings a command runs with: the upstream's preset under what was given."""
    return SearchConfig(**{**preset_of(b), **given})


def default_method(b: BackendSettings) -> str:
    return EMBEDDED_METHOD if kind_of(b) == "embedded" else "forest"


def price_of(b: BackendSettings) -> Price | None:
    if b.price_in is None and b.price_out is None:
        return None
    return Price(input=b.price_in or 0.0, output=b.price_out or 0.0, cached_input=b.price_cached)


@dataclass
class Upstream:
    kind: str  # sim | server | embedded
    base_urls: list[str]
    model: str | None
    label: str  # how the summary and the logs name it (SIMULATED said when it is)
    context_window: int | None = None
    concurrency: int | None = None
    max_n: int | None = None  # the most choices one request may ask for (fot.backend.llm)
    local: object | None = None  # the embedded server (fot.backend.local.LocalServer), to ask whether it died

    @property
    def simulated(self) -> bool:
        return self.kind == "sim"

    def died(self) -> str | None:
        return self.local.died() if self.local is not None else None


async def start_upstream(stack: AsyncExitStack, b: BackendSettings, *, seed: int = 0,
                         problems: list[Problem] = (), say: Callable[[str], None] = lambda m: None) -> Upstream:
    """Start (or name) the upstream, stopped when `stack` closes. fot.sim gets the problems' references so its
    simulated solver knows right from wrong (the search itself never sees them). Raises FotError."""
    kind = kind_of(b)
    if kind == "sim":
        from .sim import SimConfig, SimServer
        from .sim.solver import normalize_question

        try:
            profile, faults = sim_profile(b.sim_profile), sim_faults(list(b.sim_fault))
        except ValueError as e:
            raise UpstreamError(str(e)) from None
        sim = await stack.enter_async_context(SimServer(SimConfig(
            seed=seed, profile=profile, faults=faults, hang_s=600.0,
            problems={normalize_question(p.question): p.answer for p in problems if p.answer is not None})))
        return Upstream(kind, [sim.base_url], "fot-sim", "fot.sim (SIMULATED backend, a test double)",
                        concurrency=b.concurrency)
    if kind == "server":
        urls = list(b.base_url)
        label = public_url(urls[0]) if len(urls) == 1 else f"{len(urls)} endpoints"  # never a URL's user:password
        return Upstream(kind, urls, b.model, label, concurrency=b.concurrency)
    from .backend.local import LocalServer, LocalServerConfig

    say("no --base-url: starting the embedded local model server (llama.cpp)")
    local = await stack.enter_async_context(LocalServer(LocalServerConfig(gguf=b.gguf, n_ctx=b.n_ctx,
                                                                          n_threads=b.n_threads, slots=b.slots)))
    return Upstream(kind, [local.base_url], local.model, f"local llama.cpp server ({local.gguf.name})",
                    context_window=b.n_ctx, concurrency=b.concurrency or local.slots,  # it decodes that many at once
                    max_n=local.slots, local=local)  # and refuses a larger n


class UpstreamError(FotError):
    """Settings for the upstream that cannot be used (a bad --sim-profile or --sim-fault)."""

    kind = "input"


def sim_profile(spec: str):
    """'p_first=0.4,p_fix=0.3' -> SimProfile with those fields changed."""
    from .sim import SimProfile

    profile = SimProfile()
    names = {f.name for f in dataclasses.fields(SimProfile)}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        if key not in names or not value:
            raise ValueError(f"--sim-profile: '{part}' is not KEY=VALUE with KEY one of {', '.join(sorted(names))}")
        current = getattr(profile, key)
        try:
            if isinstance(current, tuple):  # several numbers: eval_right=20:40
                parsed = tuple(float(v) for v in value.split(":"))
                if len(parsed) != len(current) and key != "distractor_weights":
                    raise ValueError
            else:
                parsed = type(current)(float(value)) if isinstance(current, int) else float(value)
        except ValueError:
            what = "numbers joined by :" if isinstance(current, tuple) else "a number"
            raise ValueError(f"--sim-profile: '{part}' needs {what}") from None
        profile = dataclasses.replace(profile, **{key: parsed})
    return profile


def sim_faults(specs: list[str]) -> dict[str, float]:
    from .sim import FAULT_KINDS

    faults: dict[str, float] = {}
    for spec in specs:
        kind, _, rate = spec.partition("=")
        try:
            r = float(rate)
        except ValueError:
            r = -1.0
        if kind not in FAULT_KINDS or not 0 <= r <= 1:
            raise ValueError(f"--sim-fault {spec!r}: expected KIND=RATE, KIND one of {', '.join(FAULT_KINDS)}, "
                             f"RATE in [0, 1]")
        faults[kind] = r
    if sum(faults.values()) > 1:
        raise ValueError("--sim-fault rates sum to more than 1")
    return faults


def check_sim(b: BackendSettings) -> None:
    """Refuse bad simulator settings before anything starts (ValueError, one line)."""
    sim_profile(b.sim_profile)
    sim_faults(list(b.sim_fault))
