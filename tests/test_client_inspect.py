"""inspect-ai (an evaluation harness) against `fot serve --sim` (fot.sim: a SIMULATED backend), through its
OpenAI-compatible provider, `openai-api/<service>/<model>`: an eval's answers and scores, the usage it
records, streaming, and fot's refusals as the errors the harness records (the openai client's own)."""

import os

os.environ.setdefault("INSPECT_DISPLAY", "none")  # no live console display inside the test run

import pytest  # noqa: E402
from inspect_ai import Task, eval_async  # noqa: E402
from inspect_ai.dataset import Sample  # noqa: E402
from inspect_ai.model import GenerateConfig, get_model  # noqa: E402
from inspect_ai.scorer import includes  # noqa: E402
from inspect_ai.solver import generate, system_message  # noqa: E402


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")




def arithmetic() -> Task:
    samples = [Sample(input=f"What is {a} * {b}?", target=str(a * b)) for a, b in ((17, 23), (12, 11), (9, 8))]
    return Task(dataset=samples, solver=[system_message("Answer the question."), generate()], scorer=includes())


async def run(s, tmp_path, model="fot-2x1", stream=False, **config):
    model = get_model(f"openai-api/fot/{model}", base_url=s.base_url, api_key="unused", stream=stream,
                      config=GenerateConfig(max_retries=0, timeout=60, **config))
    [log] = await eval_async(arithmetic(), model=model, log_dir=str(tmp_path), max_connections=3,
                             fail_on_error=False)
    return log


def accuracy(log) -> float:
    return log.results.scores[0].metrics["accuracy"].value


async def test_an_eval_scores_the_forest_and_records_its_usage(served, tmp_path):
    before = served.spent()
    log = await run(served, tmp_path)
    assert log.status == "success" and accuracy(log) == 1.0
    [usage] = log.stats.model_usage.values()
    # inspect counts cached prompt tokens apart from the rest of the input
    assert usage.total_tokens == usage.input_tokens + usage.input_tokens_cache_read + usage.output_tokens
    assert usage.total_tokens == served.spent() - before and usage.input_tokens_cache_read > 0


async def test_a_streaming_eval(served, tmp_path):
    before = served.spent()
    log = await run(served, tmp_path, model="sc-3", stream=True)
    assert log.status == "success" and accuracy(log) == 1.0
    [usage] = log.stats.model_usage.values()
    assert usage.total_tokens == served.spent() - before


def errors(log) -> list[str]:
    """Each sample's error as the harness recorded it (fail_on_error=False: the eval goes on, each one says why)."""
    return [s.error.message if s.error is not None else "" for s in log.samples]


async def test_refusals_are_recorded_as_the_clients_errors(served, spent_server, tmp_path):
    bad = await run(served, tmp_path, temperature=7.0)  # fot refuses a temperature past 2 (400)
    assert all("BadRequestError" in e and "must be a number from 0 to 2" in e for e in errors(bad))
    busy = await run(spent_server, tmp_path)  # the server's run budget is spent (429); no retries asked for
    assert all("RateLimitError" in e for e in errors(busy))  # inspect keeps the type, not the message
