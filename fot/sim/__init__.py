"""`fot.sim`: a simulated OpenAI-compatible backend. A test double, never a model."""

from .server import FAULT_KINDS, SimBackend, SimConfig, SimServer, SimStats
from .solver import SimProfile, SimSolver, arithmetic_truth, sim_tokens

__all__ = ["FAULT_KINDS", "SimBackend", "SimConfig", "SimProfile", "SimServer", "SimSolver", "SimStats",
           "arithmetic_truth", "sim_tokens"]
