"""The walls of the house (docs/architecture.md): layering with no upward import, settings that load
nothing of the search, one home per kind of rule, tasks whose optional powers have defaults."""

import ast
import random
import subprocess
import sys
from pathlib import Path

import pytest

from fot.tasks import Arith, BaseTask, get_task

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "fot"

# the layers, bottom up; a module may import its own layer and those below, never one above
LAYERS = [
    ("base", {"errors", "aio", "runtime", "appserver", "tokens", "prompts", "stats", "expr", "usage"}),
    ("domain", {"tasks", "problems"}),
    ("backend", {"budget", "ledger", "endpoints", "llm", "local"}),
    ("search", {"config", "decision", "inputs", "verifiers", "policies", "mctsr", "forest", "baselines"}),
    ("measure", {"meter", "results"}),
    ("methods", {"methods"}),
    ("library", {"engine", "distributed"}),
    ("faces", {"solve", "sweep", "serve", "view", "options", "upstream", "__main__", "__init__"}),
]
SIM = {"sim"}  # the simulator (a test double) stands beside the house and never imports the search


def _layer(module: str) -> int | None:
    for i, (_, names) in enumerate(LAYERS):
        if module in names:
            return i
    return None


def _imports(path: Path) -> set[str]:
    """The fot modules a file imports (top-level names: fot.tasks.builtin -> tasks)."""
    rel = path.relative_to(PKG).with_suffix("")
    package = list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                parts = base + (node.module.split(".") if node.module else [])
                if not parts:
                    out |= {a.name for a in node.names}  # from . import prompts
                else:
                    out.add(parts[0])
            elif node.module and node.module.startswith("fot."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fot.")}
    return out


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        me = rel.parts[0].removesuffix(".py")
        mine = _layer(me)
        for other in _imports(path) - {me}:
            if me in SIM:
                if _layer(other) is not None and _layer(other) >= _layer("config"):
                    upward.append(f"{rel} -> {other} (the simulator must not import the search)")
                continue
            theirs = _layer(other)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{rel} ({LAYERS[mine][0]}) -> {other} ({LAYERS[theirs][0]})")
    assert not upward, upward


def test_every_module_has_a_layer():
    names = {p.relative_to(PKG).parts[0].removesuffix(".py") for p in PKG.glob("*") if p.name != "__pycache__"}
    assert names - SIM <= set().union(*(n for _, n in LAYERS)), sorted(names - SIM - set().union(*(n for _, n in LAYERS)))


def test_settings_load_neither_the_search_nor_the_http_client():
    code = ("import sys, fot.config; fot.config.SearchConfig(); "
            "print(sorted(m for m in ('fot.llm', 'fot.endpoints', 'fot.mctsr', 'fot.forest', 'aiohttp', 'openai') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_an_agent_task_gets_the_defaults_of_what_it_leaves_out():
    class Mine:  # the protocol's methods only: no validate, shuffle, exemplars, answer_max_tokens
        name = "mine"
        instructions = "Answer with one word."

        def extract(self, text):
            return text.strip().split()[-1] if text.strip() else None

        def equivalent(self, a, b, question=""):
            return a.lower() == b.lower()

        def grade(self, answer, reference, question=""):
            return answer is not None and answer.lower() == reference.lower()

        def rule_check(self, question, text):
            return None

    task = get_task(Mine())
    assert isinstance(task, BaseTask) and task.name == "mine"
    assert task.validate("anything") is None and task.shuffle is None and task.exemplars == ()
    assert task.answer_max_tokens == 512 and task.needs_reference
    assert task.extract("it is Paris") == "Paris" and task.equivalent("paris", "PARIS")
    assert get_task(Arith()).shuffle("What is 2 + 3?", random.Random(0)) == "What is 3 + 2?"


@pytest.mark.parametrize("name", ["arith", "gsm8k", "math", "game24", "aime", "generic"])
def test_builtin_tasks_are_base_tasks(name):
    task = get_task(name)
    assert isinstance(task, BaseTask)
    assert task.needs_reference == (name != "game24")
