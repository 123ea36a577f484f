"""LangChain's ChatOpenAI against `fot serve --sim` (fot.sim: a SIMULATED backend): sync, async, streaming,
usage, and fot's refusals as the exceptions LangChain raises (it raises the openai client's own)."""

import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from serving import Q




def chat(s, model="fot-2x1", **kw) -> ChatOpenAI:
    # its own async HTTP client: LangChain caches one per process, bound to the event loop of the first test
    return ChatOpenAI(base_url=s.base_url, api_key="unused", model=model, max_retries=0, timeout=60,
                      http_async_client=openai.DefaultAsyncHttpxClient(), **kw)


def test_invoke_answers_with_the_forests_usage(served):
    before = served.spent()
    m = chat(served).invoke([SystemMessage("You are a careful calculator."), HumanMessage(Q)])
    assert "391" in m.content
    u = m.usage_metadata
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"] > 0
    assert u["total_tokens"] == served.spent() - before  # the bill is what the server spent upstream
    assert m.response_metadata["model_name"] == "fot-2x1"


async def test_ainvoke_and_astream(served):
    m = await chat(served, model="sc-3").ainvoke(Q)
    assert "391" in m.content and m.usage_metadata["total_tokens"] > 0
    before = served.spent()
    chunks = [c async for c in chat(served, stream_usage=True).astream(Q)]
    text = "".join(c.content for c in chunks)
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert "391" in text and len(usage) == 1
    assert usage[0]["total_tokens"] == served.spent() - before


def test_stream_sync(served):
    chunks = list(chat(served, model="cot", stream_usage=True).stream(Q))
    assert "391" in "".join(c.content for c in chunks)
    assert sum(c.usage_metadata["total_tokens"] for c in chunks if c.usage_metadata) > 0


def test_a_plain_model_name_is_ordinary_chat_through_the_proxy(served):
    before = served.spent()
    m = chat(served, model="fot-sim", temperature=0.5).invoke(Q)  # the upstream's own name: passed through
    assert m.content and m.usage_metadata["total_tokens"] > 0
    assert served.spent() == before  # one upstream call, not a forest: the forest's budget is not touched
    text = "".join(c.content for c in chat(served, model="fot-sim", streaming=True).stream(Q))
    assert text


def test_refusals_are_the_clients_own_exceptions(served, spent_server):
    with pytest.raises(openai.BadRequestError, match="stop"):
        chat(served).invoke(Q, stop=["\n"])  # a forest cannot honour a stop sequence: 400, not ignored
    with pytest.raises(openai.BadRequestError, match="budget"):
        chat(served, extra_body={"fot": {"budget": 5}}).invoke(Q)
    with pytest.raises(openai.NotFoundError):
        chat(served, model="no-such-model").invoke(Q)  # passed through: the upstream's own 404
    with pytest.raises(openai.RateLimitError, match="run budget"):
        chat(spent_server).invoke(Q)


async def test_async_refusals(served, spent_server):
    with pytest.raises(openai.BadRequestError, match="temperature"):
        await chat(served, temperature=7).ainvoke(Q)
    with pytest.raises(openai.RateLimitError):
        await chat(spent_server).ainvoke(Q)
