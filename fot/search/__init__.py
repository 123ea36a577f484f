"""The search layer: how one problem's tokens are spent on trees and samples.

    mctsr.py      one MCTS-self-refine tree (Zhang et al. 2024): UCT, refine, evaluate, backpropagate
    forest.py     several trees at once, their inputs, early stop and the decision (Bi et al. 2025)
    inputs.py     input diversity: how each tree is asked (INPUT_KINDS)
    verifiers.py  how candidates are scored during the search (VERIFIERS)
    decision.py   how the trees' answers become one (DECISION_RULES), for runs and replays alike
    baselines.py  plain sampling: cot, sc, best-of-N on the same token axis
    prompts.py    every prompt the search sends
    policies.py   the registries re-exported for agent code
    aio.py        gather_all: no call outlives its step

None of it ever sees a reference answer; grading is the measurement layer's.
"""
