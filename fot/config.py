"""One configuration dataclass for the whole search; every constant of MCTSr and FoT is here.

The pluggable rules (tree inputs, verifier, decision rule) are named by key and checked against
their registries (fot/search/inputs.py, fot/search/verifiers.py, fot/search/decision.py). Settings are plain data, so
this module imports nothing of fot at its top but the exception tree: a config can be built (and
read by the command line) without loading the search or the HTTP client. The registries are
looked up when a config is made, to refuse an unknown key at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .errors import UsageError


class _Unset:
    """'Not set', where None is a legal value (e.g. `logprob_threshold=None` turns self-correction off)."""

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()

MAX_TOKENS = 10**15  # a larger budget is no cap: past 2**53 the budget's float arithmetic is no longer exact


def setting(default: Any, help: str, *, flag: str | None = None, cli: bool = True, **meta: Any) -> Any:
    """A settings field: its default and its help, read by the command line (fot/options.py), which
    turns each into one option (`--the-name`); `cli=False` keeps a field off the command line."""
    return field(default=default, metadata={"help": help, "flag": flag, "cli": cli, **meta})


@dataclass(frozen=True)
class SearchConfig:
    trees: int = setting(4, "trees per problem (default 4; 2 on the embedded local model)", minimum=1)
    rollouts: int = setting(8, "rollouts per tree (default 8; 1 on the embedded local model)", minimum=0)

    # MCTSr (Zhang et al. 2024)
    c: float = setting(1.4, "UCT exploration constant, on the scale --uct-scale says", flag="--uct-c")
    uct_scale: str = setting("range", "the exploration bonus's scale: range (c times the reward range, 200: UCB1 on Q "
                                      "normalised to [0, 1]; default), raw (c on the -100..100 scale, as the official "
                                      "code: UCT is then close to greedy on Q)")
    eps: float = setting(1e-5, "UCT: keeps the bonus of a node with no readable evaluation finite", flag="--uct-eps")
    max_children: int = setting(3, "children of a node before it counts as fully expanded", minimum=1)
    max_children_rule: str = setting("cap", "cap (a node with max-children children is closed; default), official "
                                             "(closed only once a child also beats it: a node whose refinements all "
                                             "score worse gets children without limit)")
    reward_samples: int = setting(1, "self-evaluation samples per new node (default 1, as the official MCTSr code; "
                                     "the selected node gets one more per selection)", minimum=1)
    reward_cache: str = setting("tree", "reuse the rewards of an answer already scored: tree (within each tree; "
                                        "default, keeps replay exact), problem (across the forest's trees), off")
    dummy_scoring: str = setting("lazy", "the dummy root ('I don't know') is scored: lazy (only once no real "
                                         "candidate's Q is >= 0, when selection could pick it; default), always")
    full_score: float = setting(95.0, "self-evaluation scores >= this are suppressed ...")
    full_score_penalty: float = setting(50.0, "... by subtracting this")
    rescore_selected: bool = setting(True, "one more reward sample of the selected node, alongside its critique")
    answer_max_tokens: int | None = setting(None, "completion cap of an answer or refine step (default: the task's "
                                                  "own; 512 if it has none)")
    critique_max_tokens: int = setting(384, "completion cap of a critique")
    eval_max_tokens: int = setting(192, "completion cap of one self-evaluation, analysis and score line (default "
                                        "192; 96 on the embedded local model)")
    keep_logprobs: int = setting(0, "samples ask for token log-probs with this many top alternatives per token and "
                                    "record each token's log-prob and confidence (the confidence rule, deepconf and "
                                    "the meter's signals read them); 0: not asked", minimum=0, maximum=20)
    esc_window: int = setting(2, "esc: samples per window; sampling stops at the first window whose answers all agree",
                              minimum=1)
    deepconf_warmup: int = setting(4, "deepconf: traces run to the end to set the confidence threshold", minimum=1)
    deepconf_keep: float = setting(90.0, "deepconf: the share (percent) of warm-up traces the threshold keeps: 90 is "
                                         "DeepConf-high, 10 DeepConf-low", above=0, maximum=100)
    min_tokens: int = setting(16, "a call that cannot get this many completion tokens is not made")

    # Forest (Bi et al. 2025)
    inputs: tuple[str, ...] = setting(("raw", "rephrase", "shuffle", "example"),
                                      "tree inputs, cycled over the trees (fot/search/inputs.py), comma-separated")
    temperatures: tuple[float, ...] = setting((0.7, 1.0), "sampling temperatures, cycled over the trees, comma-separated")
    seed: int = setting(0, "seed of every sampled call (tree i, sample i: seed*1000 + i)")
    activation_threshold: float = setting(0.0, "sparse activation: trees whose best Q is below do not vote")
    sparse_stop: int | None = setting(1, "sparse activation that saves compute: a tree whose best Q is still below "
                                         "--activation-threshold after this many rollouts stops expanding (0: after "
                                         "its first answer; none: every tree runs every rollout). Not applied where "
                                         "the verifier can prove answers (Game of 24): there every unproven tree is "
                                         "below it", minimum=0)
    majority: float = setting(0.5, "a decision by vote needs more than this share of the active trees")
    decision: str = setting("majority_first", "how the forest decides (fot/search/decision.py): a majority of all trees first "
                                              "(default), or the paper's order, sparse activation first")
    tie_break: str = setting("expert", "no decision by vote: ask an expert prompt (default) or take the rule's "
                                       "fallback, q (largest group, then best Q)")
    logprob_threshold: float | None = setting(-1.0, "regenerate a step whose mean token log-prob is lower (default -1, "
                                                    "the official FoT code's; the mean is over prompt and completion "
                                                    "where the backend returns prompt log-probs, else over the "
                                                    "completion; none: off)")
    max_corrections: int = setting(1, "regenerations per step (log-prob or rule check)")
    early_stop: bool = setting(False, "stop the other trees once their votes could no longer change the decision")
    proof: str = setting("stop", "a proven answer (a complete verifier, e.g. the Game-of-24 rule check, passed it): "
                                 "stop (it wins the vote, its tree stops and the forest cancels the other trees; "
                                 "default), win (it wins the vote, nothing stops), off (it votes like any other)")
    verifier: str = setting("auto", "how candidates are scored in search (fot/search/verifiers.py): auto, self, rule, "
                                    "reward_model")
    constrain: str = setting("json_schema", "how the 'constrained' verifier forces a readable score: json_schema "
                                            "(response_format: OpenAI, vLLM, SGLang, llama.cpp, Ollama) or grammar "
                                            "(llama.cpp's GBNF)", choices=("json_schema", "grammar"))
    prm_aggregate: str = setting("min", "how the 'prm' verifier folds its step scores: min, last, prod, mean",
                                 choices=("min", "last", "prod", "mean"))
    expert_max_tokens: int = setting(256, "completion cap of the expert's comparison")
    decision_reserve: float = setting(0.05, "share of a problem budget kept for the expert decision")
    tree_budget: int | None = setting(None, "tokens per tree (hard cap), the same at any forest size, so smaller "
                                            "forests replay exactly; --budget stays the outer cap. Without it, each "
                                            "tree gets budget / trees", minimum=1, maximum=MAX_TOKENS)
    max_consecutive_failures: int = setting(2, "a tree stops after this many failed rollouts in a row")

    def __post_init__(self) -> None:
        check_limits(self)
        checks = {
            "trees": self.trees >= 1, "rollouts": self.rollouts >= 0, "c": self.c >= 0, "eps": self.eps > 0,
            "max_children": self.max_children >= 1, "reward_samples": self.reward_samples >= 1,
            "answer_max_tokens": self.answer_max_tokens is None or self.answer_max_tokens >= 1,
            "eval_max_tokens": self.eval_max_tokens >= 1, "inputs": bool(self.inputs),
            "temperatures": bool(self.temperatures), "majority": 0 <= self.majority < 1,
            "max_corrections": self.max_corrections >= 0, "tree_budget": self.tree_budget is None or self.tree_budget >= 1, "decision_reserve": 0 <= self.decision_reserve < 1,
            "tie_break": self.tie_break in ("expert", "q"),
            "reward_cache": self.reward_cache in ("tree", "problem", "off"),
            "uct_scale": self.uct_scale in ("range", "raw"), "max_children_rule": self.max_children_rule in ("cap", "official"),
            "dummy_scoring": self.dummy_scoring in ("lazy", "always"), "proof": self.proof in ("stop", "win", "off"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise UsageError(f"invalid search setting(s): {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")
        from .search.decision import DECISION_RULES  # the registries, at use: see the module's docstring
        from .search.inputs import INPUT_KINDS
        from .search.verifiers import VERIFIERS

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


def check_limits(obj: Any) -> None:
    """The numeric limits a settings field declares (`minimum`, `above`; floats finite), enforced the same
    way for the library and the command line, with the option's name in the message."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        why = limit_violation(f, v)
        if why:
            raise UsageError(why)


def flag_of(f: Any) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def limit_violation(f: Any, v: Any) -> str:
    """Why value `v` breaks field `f`'s declared limits, or ""."""
    if v is None or isinstance(v, (bool, str, tuple)):
        return ""
    flag, lo, above, hi = flag_of(f), f.metadata.get("minimum"), f.metadata.get("above"), f.metadata.get("maximum")
    if isinstance(v, float) and not math.isfinite(v):
        return f"{flag} must be a finite number, got {v}"
    if lo is not None and v < lo:
        return f"{flag} must be >= {lo}, got {v}"
    if hi is not None and v > hi:
        return f"{flag} must be <= {hi}, got {str(v)[:40]}"
    if above is not None and v <= above:
        return f"{flag} must be > {above}, got {v}"
    return ""


@dataclass(frozen=True)
class BackendSettings:
    """Which backend answers, and how the client treats it (fot.solve, fot.sweep, fot serve)."""

    base_url: tuple[str, ...] = setting((), "OpenAI-compatible server (default $OPENAI_BASE_URL); give it several "
                                            "times for replicas of one model: calls go to the least loaded, a failing "
                                            "one is taken out until it answers (docs/scale.md). user:pass@ in it is "
                                            "sent as Basic auth", append=True, metavar="URL", url=True,
                                        aliases=("--upstream",))
    model: str | None = setting(None, "model name (default $FOT_MODEL, else the server's first model)")
    api_key: str | None = setting(None, "API key (default $OPENAI_API_KEY); never printed or stored")
    sim: bool = setting(False, "run against fot.sim, the SIMULATED backend (a test double)")
    sim_fault: tuple[str, ...] = setting((), "with --sim: inject faults, KIND=RATE (429, 500, 503, hang, truncate, "
                                             "drop, nonjson, not_completion, no_usage, short_n)", append=True,
                                         metavar="KIND=RATE")
    sim_profile: str = setting("", "with --sim: the simulated solver's skill, e.g. p_first=0.4,p_fix=0.3,"
                                   "eval_wrong=40:30 (see fot.sim.SimProfile)", metavar="K=V,...")
    gguf: str | None = setting(None, "with no --base-url: serve this GGUF locally (default $FOT_GGUF, else "
                                     "SmolLM2-135M)")
    n_ctx: int = setting(4096, "local server context size (per slot)", minimum=256)
    n_threads: int | None = setting(None, "local server threads (default: half the cores, docs/local.md)", minimum=1)
    slots: int | None = setting(None, "local server parallel slots: requests decoded together, and the largest n "
                                      "of one request (default 8, docs/local.md)", minimum=1)
    concurrency: int | None = setting(None, "cap on requests in flight per endpoint (default: none, the work in flight "
                                            "decides, and a 429 or 503 lowers it; the slot count for the embedded "
                                            "local server; docs/performance.md); per worker with --ray", minimum=1)
    rps: float | None = setting(None, "requests per second cap", minimum=0)
    timeout: float = setting(120.0, "seconds per request", above=0)
    max_attempts: int = setting(6, "attempts per request (retries on 429, 5xx, timeouts, bad bodies)", minimum=1)
    price_in: float | None = setting(None, "USD per million prompt tokens", minimum=0)
    price_out: float | None = setting(None, "USD per million completion tokens", minimum=0)
    price_cached: float | None = setting(None, "USD per million cached prompt tokens", minimum=0)

    def __post_init__(self) -> None:
        check_limits(self)


@dataclass(frozen=True)
class RunSettings:
    """What a run of `fot.solve` does with the problems: the method, budgets, output and resume."""

    task: str = setting("auto", "the task (detected if auto)", choices="tasks")
    method: str | None = setting(None, "how to spend each problem's tokens", choices="methods")
    samples: int = setting(8, "samples for sc / bon (default 8); smaller counts are replayed from the run", minimum=1)
    budget: int | None = setting(None, "tokens per problem (hard cap)", minimum=1, maximum=MAX_TOKENS)
    run_budget: int | None = setting(None, "tokens for the run (hard cap)", minimum=1, maximum=MAX_TOKENS)
    parallel: int = setting(4, "problems at once (with --ray: in total, spread over the workers)", minimum=1)
    examples: str | None = setting(None, "your own solved problems (question + worked answer), shown to 'example' "
                                         "trees; never the problem file itself", metavar="FILE")
    dataset: str | None = setting(None, "a benchmark by name instead of PROBLEMS: gsm8k, math500, game24, aime, "
                                        "strategyqa, with :SPLIT (aime:2025); read from --data-dir (fot datasets "
                                        "lists them)", metavar="NAME[:SPLIT]")
    data_dir: str | None = setting(None, "where --dataset's files are (default $FOT_DATA, else ../shared/data next to "
                                         "the checkout)", metavar="DIR")
    out: str | None = setting(None, "results JSONL (default fot-results/<problems>-<method>.jsonl); resumable")
    limit: int | None = setting(None, "first N problems only", minimum=1)
    trace: str | None = setting(None, "write every call to this JSONL file")
    trace_text: bool = setting(False, "with --trace: keep each call's prompt messages and completion texts too "
                                      "(large)")
    no_trees: bool = setting(False, "do not keep the node record <out>.trees.jsonl (what fot.view draws)")
    retry_errors: bool = setting(False, "on resume, redo problems that ended in an error")
    resume_changed: bool = setting(False, "resume even though --out holds results made with other settings (they "
                                          "will be mixed)")
    quiet: bool = setting(False, "no progress display")
    ray: str | None = setting(None, "spread the problems over Ray workers, each with its own Engine (the 'ray' "
                                    "extra); no ADDRESS starts a local Ray, ADDRESS (host:port, ray://host:port, auto) "
                                    "joins a cluster, which must reach the backend. --parallel is then problems in "
                                    "flight in total; --concurrency and --rps are per worker. Put it after PROBLEMS, "
                                    "or write --ray=ADDRESS", optional_value="", metavar="ADDRESS")
    ray_workers: int | None = setting(None, "with --ray: Ray workers (default: the cluster's CPUs, at least 1)",
                                      minimum=1, metavar="N")

    def __post_init__(self) -> None:
        check_limits(self)
