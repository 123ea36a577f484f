"""The pluggable rules of the search, re-exported from their homes for agent code and the docs:

    INPUT_KINDS     how a tree's input is varied          fot/inputs.py
    VERIFIERS       how candidates are scored in search   fot/verifiers.py
    DECISION_RULES  how the forest picks one answer       fot/decision.py

`SearchConfig` names them by key; agent code may pass its own object instead
(`engine.solve(..., verifier=obj, decision=obj)`). None of these ever sees a reference answer.
"""

from __future__ import annotations

from .config import UNSET
from .decision import (DECISION_RULES, ActivationFirst, Decision, DecisionRule, MajorityFirst, Vote, decision_rule,
                       group_answers, vote)
from .inputs import (INPUT_KINDS, Example, InputContext, InputKind, Raw, Rephrase, Shuffle, TreeInput,
                     nearest_examples, shuffle_premises)
from .verifiers import (VERIFIERS, RewardModel, RuleVerifier, Scores, SelfEvaluation, Verifier, VerifierContext,
                        make_verifier)

__all__ = ["ActivationFirst", "DECISION_RULES", "Decision", "DecisionRule", "Example", "INPUT_KINDS",
           "InputContext", "InputKind", "MajorityFirst", "Raw", "Rephrase", "RewardModel", "RuleVerifier", "Scores",
           "SelfEvaluation", "Shuffle", "TreeInput", "UNSET", "VERIFIERS", "Verifier", "VerifierContext", "Vote",
           "decision_rule", "group_answers", "make_verifier", "nearest_examples", "shuffle_premises", "vote"]
