"""The backend layer: everything between the search and an OpenAI-compatible server.

    llm.py        the client: one call, its retries, its usage (fot.backend.llm.LLMClient)
    endpoints.py  the HTTP side: a pool per endpoint, which endpoint serves a call, health
    budget.py     the token-budget controller: reserve before a call, settle after, never overspend
    ledger.py     one row per call (the meter's raw material), streamed to the trace
    tokens.py     our own token counts, where the server gives none
    local.py      the embedded model: a llama.cpp server as a child process
    appserver.py  start/stop of the loopback aiohttp servers (fot serve, fot.sim)

Nothing here knows the search: it makes calls and counts them.
"""
