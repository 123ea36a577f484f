"""What a request to `fot serve` may say and what a reply says: OpenAI's chat-completion shapes, the
model-name presets (generated from the method registry, fot/methods/), the limits, and the error object."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import MAX_TOKENS, SearchConfig
from ..backend.ledger import Totals
from ..methods import METHODS
from ..tasks import TASKS

# beyond these a request is a mistake, not a search; a budget past 10**15 tokens is no cap a float can hold exactly
LIMITS = {"trees": 64, "rollouts": 64, "samples": 256, "budget": MAX_TOKENS}
EXTRA_KEYS = ("method", "trees", "rollouts", "samples", "budget", "task", "seed")
UNSUPPORTED = ("tools", "functions", "tool_choice", "response_format")  # a forest answers in text only
# sampling fields a forest cannot honour (it decides among whole answers): refused rather than dropped silently
UNHONOURED = ("stop", "logprobs", "top_logprobs", "logit_bias")
# a request budget when neither the request nor `--budget` names one: enough for a 4x8 forest's first answers and
# some search on a short question, not the 37,762 tokens an uncapped 4x8 forest spent on "What is 17 * 23?"
DEFAULT_REQUEST_BUDGET = 20_000


class ApiError(Exception):
    """A refusal, carried to the reply as OpenAI's error object with its HTTP status."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers, self.extra = headers or {}, extra or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code},
                **self.extra}


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8100
    api_key: str | None = None  # clients must send it as a Bearer token; None: no check
    max_active: int = 8  # forests solved at once
    queue_limit: int = 32  # requests waiting for a slot; more are refused with 429
    budget: int | None = None  # tokens per request when the request names none
    trees: int = 4
    rollouts: int = 8
    samples: int = 8
    task: str = "auto"
    keepalive_s: float = 10.0  # a stream sends an SSE comment this often while the forest works
    poll_s: float = 0.2  # how often a running request checks that its client is still there
    idle_timeout_s: float = 15.0  # a connection with no request (or a request's headers unfinished) is closed after this
    body_timeout_s: float = 30.0  # a request body that has not arrived whole by then is refused (408)
    simulated: bool = False  # the upstream is fot.sim: say so in every reply


@dataclass(frozen=True)
class Plan:
    """What one request asks the engine for."""

    method: str
    trees: int
    rollouts: int
    samples: int
    budget: int | None
    task: str
    seed: int | None = None
    model: str | None = None  # the upstream model the preset runs on (None: the server's own, --model)
    temperature: float | None = None  # the request's `temperature`: every tree and sample samples at it
    max_tokens: int | None = None  # the request's `max_tokens`: the cap of each answer (so of the reply's text)


def usage_of(roles: dict[str, Totals]) -> dict:
    """OpenAI's usage object for a whole forest. `total_tokens` also counts calls whose outcome is unknown
    (cut off mid-reply: charged at their reservation, as the budget does), so it can exceed prompt +
    completion; `fot.backend.tokens.unknown` says by how much."""
    t = Totals()
    for r in roles.values():
        for name in ("calls", "prompt_tokens", "completion_tokens", "cached_tokens", "unknown_tokens"):
            setattr(t, name, getattr(t, name) + getattr(r, name))
    return {"prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
            "total_tokens": t.total_tokens, "prompt_tokens_details": {"cached_tokens": t.cached_tokens}}


# -- reading a request ---------------------------------------------------------------------------

def _text(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text can be read
        parts = []
        for p in content:
            if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise ApiError(400, f"{where}: only text content parts are supported", param=where)
            parts.append(p["text"])
        return "\n".join(parts)
    if content is None:
        return ""
    raise ApiError(400, f"{where} must be a string or a list of text parts", param=where)


def question_of(messages: object) -> str:
    """The problem and its context in one text (what `split_messages` keeps apart), for a log or a test."""
    question, context = split_messages(messages)
    return question if not context else f"{context}\n\nQuestion: {question}"


def split_messages(messages: object) -> tuple[str, str]:
    """(the question, the context). The last user message is the problem: it is what the task detects, what
    the search solves and what a grader would compare. Everything before it (the system prompt, earlier
    turns) is context, given to every call of the search as a system message (fot.backend.llm), never
    folded into the question: an agent's "You are a helpful assistant" is not part of the problem."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages")
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]")
        turns.append((m["role"], _text(m.get("content"), f"messages[{i}].content")))
    last = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=None)
    if last is None or not turns[last][1].strip():
        raise ApiError(400, "no user message with text: the last user message is the problem", param="messages")
    earlier = [(role, text) for role, text in turns[:last] if text.strip()]
    question = turns[last][1].strip()
    if not earlier:
        return question, ""
    if all(role in ("system", "developer") for role, _ in earlier):  # the common case: a system prompt alone
        return question, "\n\n".join(text for _, text in earlier)
    return question, "Earlier messages of the conversation:\n" + "\n".join(f"{role}: {text}" for role, text in earlier)


def _shown(value: object) -> str:
    """A value for an error message: a number of thousands of digits is described, not echoed."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else f"a {len(str(value))}-digit number"
    return text if len(text) <= 80 else text[:77] + "..."


def _int(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ApiError(400, f"'{name}' must be an integer >= {least}, got {_shown(value)}", param=name)
    limit = LIMITS.get(name.rsplit(".", 1)[-1])
    if limit is not None and value > limit:
        raise ApiError(400, f"'{name}' must be at most {limit}, got {_shown(value)}", param=name)
    return value


def _size(digits: str | None, name: str) -> int | None:
    """A size from a model name; more digits than any limit has is refused before int() sees them
    (it refuses past 4,300 digits with a ValueError, and is slow long before that)."""
    if digits is None:
        return None
    if len(digits) > 6:
        raise ApiError(400, f"'{name}' in the model name must be at most {LIMITS[name]}, got a {len(digits)}-digit "
                       "number", param=name)
    return int(digits)


def preset_pattern() -> re.Pattern:
    """`<preset>[-A[xB]][/<upstream model>]` (or the older `-<upstream model>`), a preset name for each method."""
    names = "|".join(sorted((re.escape(m.preset_name) for m in METHODS.values()), key=len, reverse=True))
    return re.compile(rf"^(?P<method>{names})(?:-(?P<a>\d+)(?:x(?P<b>\d+))?)?"
                      rf"(?:(?P<sep>[-/])(?P<upstream>.+))?$")


def is_preset(model: object, upstream_model: str) -> bool:
    """Whether the model name asks for a fot method; any other name is passed through to the upstream as it is,
    so `fot serve` can stay between an agent and its model. `fot-4x8/<model>` names the upstream model; the older
    `fot-4x8-<model>` only when <model> is the server's own (else a model called e.g. `sc-lora` would be lost)."""
    if not isinstance(model, str) or not model:
        return True  # refused by plan_of, naming the field
    m = preset_pattern().match(model)
    if m is None:
        return False
    return m["sep"] != "-" or m["upstream"] == upstream_model


def preset_names(config: ServeConfig, upstream_model: str) -> list[str]:
    """The model names GET /v1/models lists: each method at the server's defaults, and a few common shapes."""
    sizes = {"trees": config.trees, "rollouts": config.rollouts, "samples": config.samples}
    names = []
    for m in METHODS.values():
        names.append(m.preset_name if not m.preset_sizes else
                     f"{m.preset_name}-" + "x".join(str(sizes[s]) for s in m.preset_sizes))
    forest = METHODS["forest"].preset_name
    extra = [forest, f"{forest}-2x4", f"{forest}-4x8", f"{forest}-{config.trees}x{config.rollouts}/{upstream_model}",
             f"{METHODS['sc'].preset_name}-16"]
    return list(dict.fromkeys([extra[0], names[0], *extra[1:4], *names[1:], extra[4]]))


def plan_of(body: dict, config: ServeConfig, upstream_model: str) -> Plan:
    """The method from the model name, then `extra_body.fot` on top."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' must name a preset, e.g. 'fot' or 'fot-4x8' (GET /v1/models)", param="model")
    m = preset_pattern().match(model)
    not_found = ApiError(404, f"the model '{model}' is not a fot preset: use fot, fot-TxR, mctsr-R, sc-N, bon-N or "
                         f"cot, optionally followed by /<upstream model> (GET /v1/models)",
                         "invalid_request_error", param="model", code="model_not_found")
    if m is None or (m["sep"] == "-" and m["upstream"] != upstream_model):
        raise not_found
    chosen = next(x for x in METHODS.values() if x.preset_name == m["method"])
    digits = [d for d in (m["a"], m["b"]) if d is not None]
    if len(digits) > len(chosen.preset_sizes):
        raise not_found
    values = {"trees": config.trees, "rollouts": config.rollouts, "samples": config.samples}
    for size, d in zip(chosen.preset_sizes, digits):
        values[size] = _size(d, size)
    for name, value in values.items():
        _int(value, name, 0 if name == "rollouts" else 1)
    if chosen.tree_search:  # one tree says trees = 1 itself (fot/methods/mctsr.py)
        values["trees"] = chosen.trees(SearchConfig(trees=values["trees"], rollouts=values["rollouts"]))
    method, trees, rollouts, samples = chosen.name, values["trees"], values["rollouts"], values["samples"]
    fot = body.get("fot") or {}
    if not isinstance(fot, dict):
        raise ApiError(400, "'fot' (extra_body) must be an object", param="fot")
    unknown = sorted(set(fot) - set(EXTRA_KEYS))
    if unknown:
        raise ApiError(400, f"unknown 'fot' setting(s) {', '.join(unknown)}; known: {', '.join(EXTRA_KEYS)}",
                       param=f"fot.{unknown[0]}")
    method = fot.get("method", method)
    if method not in METHODS:
        raise ApiError(400, f"'fot.method' must be one of {', '.join(METHODS)}", param="fot.method")
    task = fot.get("task", config.task)
    if not isinstance(task, str) or (task != "auto" and task not in TASKS):
        raise ApiError(400, f"'fot.task' must be auto or one of {', '.join(TASKS)}", param="fot.task")
    budget = _int(fot["budget"], "fot.backend.budget", 1) if fot.get("budget") is not None else config.budget
    seed = fot.get("seed")
    # bounded so that the seeds derived from it (seed * 10,007 + call) still fit an upstream's int64 `seed`
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not -2**31 <= seed < 2**31):
        raise ApiError(400, f"'fot.seed' must be an integer from -2**31 to 2**31 - 1, got {_shown(seed)}",
                       param="fot.seed")
    if seed is None and body.get("seed") is not None:  # OpenAI's own `seed`: the same meaning, fot.seed wins
        seed = body["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or not -2**31 <= seed < 2**31:
            raise ApiError(400, f"'seed' must be an integer from -2**31 to 2**31 - 1, got {_shown(seed)}", param="seed")
    upstream = m["upstream"] if m["sep"] == "/" else None
    return Plan(method=method, trees=_int(fot.get("trees", trees), "fot.trees", 1),
                rollouts=_int(fot.get("rollouts", rollouts), "fot.rollouts", 0),
                samples=_int(fot.get("samples", samples), "fot.samples", 1),
                budget=budget, task=task, seed=seed, model=None if upstream == upstream_model else upstream,
                temperature=_temperature(body.get("temperature")), max_tokens=_max_tokens(body))


def _temperature(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise ApiError(400, f"'temperature' must be a number from 0 to 2, got {_shown(value)}", param="temperature")
    return float(value)


def _max_tokens(body: dict) -> int | None:
    """`max_completion_tokens` (OpenAI's newer name) or `max_tokens`: the cap of one answer, which is the reply."""
    for name in ("max_completion_tokens", "max_tokens"):
        if body.get(name) is not None:
            return _int(body[name], name, 1)
    return None


def refuse_unhonoured(body: dict) -> None:
    """The fields a forest cannot honour, refused with 400 naming the field (OpenAI's own defaults pass)."""
    for key in UNSUPPORTED:
        if body.get(key):
            raise ApiError(400, f"'{key}' is not supported by the fot presets: the forest answers in plain text (use "
                           "a plain model name to pass the request through to the upstream)", param=key)
    for key in UNHONOURED:
        if body.get(key) not in (None, False, [], 0):
            raise ApiError(400, f"'{key}' cannot be honoured by a fot preset: the forest decides among whole "
                           "answers it samples itself (use a plain model name to pass the request through)", param=key)


