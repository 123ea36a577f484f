"""`fot serve` (`python -m fot.serve`): a Forest of Thought behind an OpenAI-compatible endpoint.

Any agent that speaks the OpenAI chat API can use the forest by changing one URL: each
`POST /v1/chat/completions` is one problem, solved by one `Engine` shared by every request (so
one concurrency cap toward the upstream), under a per-request token budget inside an optional
server-wide one. The reply is an ordinary chat completion whose `usage` is what the whole forest
spent upstream (the sum of that request's ledger rows), plus a `fot` object with the decision.

The model name picks the method (`fot`, `fot-4x8`, `fot-4x8-<upstream model>`, `mctsr-8`,
`sc-16`, `bon-8`, `cot`); `extra_body={"fot": {...}}` overrides it. Requests beyond
`--max-active` wait, at most `--queue-limit` of them; more are refused with 429 and Retry-After.
A client that goes away cancels its forest: no upstream call outlives its request.
See docs/serve.md.
"""

from __future__ import annotations

# split as vLLM's OpenAI entrypoints are: what a request and a reply are (protocol), who gets a slot
# (admission), the application (app), the command (cli)
from .admission import Admission, RequestMeter
from .app import FotServer
from .cli import ServerSettings, ServeSettings, main, parser, serve, settings_from
from .protocol import ApiError, Plan, ServeConfig, is_preset, plan_of, question_of, split_messages, usage_of

__all__ = ["Admission", "ApiError", "FotServer", "Plan", "RequestMeter", "ServeConfig", "ServeSettings",
           "ServerSettings", "is_preset", "main", "parser", "plan_of", "question_of", "serve", "settings_from",
           "split_messages", "usage_of"]

