"""LiteLLM's completion / acompletion against `fot serve --sim` (fot.sim: a SIMULATED backend), through its
OpenAI-compatible provider (`openai/<model>` with api_base): answers, usage, streaming, and fot's refusals as
LiteLLM's own exception types."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else LiteLLM fetches a price list at import

import litellm  # noqa: E402
import pytest  # noqa: E402

from serving import Q  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")  # pydantic's, on LiteLLM




def kw(s, model="fot-2x1", **extra) -> dict:
    return {"model": f"openai/{model}", "api_base": s.base_url, "api_key": "unused", "num_retries": 0,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": Q}], **extra}


def test_completion_answers_with_the_forests_usage(served):
    before = served.spent()
    r = litellm.completion(**kw(served))
    assert "391" in r.choices[0].message.content and r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens == served.spent() - before


def test_completion_stream_with_usage(served):
    before = served.spent()
    chunks = list(litellm.completion(**kw(served, "sc-3"), stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "391" in text
    usage = [c.usage for c in chunks if getattr(c, "usage", None) is not None and c.usage.total_tokens]
    assert usage and usage[-1].total_tokens == served.spent() - before


async def test_acompletion_and_async_stream(served):
    r = await litellm.acompletion(**kw(served, "cot"))
    assert "391" in r.choices[0].message.content and r.usage.total_tokens > 0
    text = ""
    async for c in await litellm.acompletion(**kw(served, "fot-2x1"), stream=True):
        if c.choices:
            text += c.choices[0].delta.content or ""
    assert "391" in text


def test_a_plain_model_name_is_ordinary_chat_through_the_proxy(served):
    before = served.spent()
    r = litellm.completion(**kw(served, "fot-sim"), max_tokens=64)
    assert r.choices[0].message.content and r.usage.total_tokens > 0
    assert served.spent() == before  # passed through: one upstream call, no forest


def test_refusals_are_litellms_own_exceptions(served, spent_server):
    with pytest.raises(litellm.BadRequestError, match="logit_bias"):
        litellm.completion(**kw(served), logit_bias={"1": 5})
    with pytest.raises(litellm.BadRequestError, match="budget"):
        litellm.completion(**kw(served), extra_body={"fot": {"budget": 5}})
    with pytest.raises(litellm.RateLimitError, match="run budget"):
        litellm.completion(**kw(spent_server))


async def test_async_refusals(served, spent_server):
    with pytest.raises(litellm.BadRequestError, match="temperature"):
        await litellm.acompletion(**kw(served), temperature=9)
    with pytest.raises(litellm.RateLimitError):
        await litellm.acompletion(**kw(spent_server))
