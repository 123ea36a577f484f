"""The methods: the ways `fot` can spend a problem's tokens, all on one token axis.

    forest   several MCTSr trees that vote (the default)          fot/methods/forest.py
    mctsr    one MCTSr tree                                        fot/methods/mctsr.py
    cot      one chain-of-thought sample                           fot/methods/cot.py
    sc       self-consistency: the majority of N samples          fot/methods/sc.py
    bon      best-of-N: the sample the verifier scores highest    fot/methods/bon.py
    esc      early-stopping sampling: stop when a window agrees   fot/methods/esc.py
    deepconf samples cut when their log-prob confidence falls     fot/methods/deepconf.py
    adaptive the forest, or sampling once its verifier says nothing fot/methods/adaptive.py

Each is one class (`fot.methods.base.Method`): its runner, its minimum budget, the settings it
records for a resume, its replay of smaller cells and its node record for the viewer. Everything
that offers a choice of method reads it from `METHODS`: `fot.solve --method`, `fot serve`'s
model-name presets, `fot.sweep --baselines` and the meter's replay. To add one: a file here with its
class, and its line below.
"""

from __future__ import annotations

from ..errors import UsageError
from .base import Method, MethodRun
from .bon import BestOfN
from .cot import ChainOfThought
from .forest import Forest
from .mctsr import OneTree
from .sc import SelfConsistency
from .esc import EarlyStopping
from .deepconf import DeepConf
from .adaptive import AdaptiveForest

METHODS: dict[str, Method] = {m.name: m for m in (Forest(), OneTree(), ChainOfThought(), SelfConsistency(),
                                                  BestOfN(), EarlyStopping(), DeepConf(), AdaptiveForest())}
SAMPLING_METHODS = tuple(name for name, m in METHODS.items() if not m.tree_search)


def get_method(name: str | Method) -> Method:
    if isinstance(name, Method):
        return name
    try:
        return METHODS[name]
    except KeyError:
        raise UsageError(f"unknown method '{name}'; known: {', '.join(METHODS)}") from None


__all__ = ["METHODS", "SAMPLING_METHODS", "Method", "MethodRun", "get_method"]
