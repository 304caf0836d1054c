"""The command gate's policy engine: parse a shell line, normalise it, judge every unit.

Public API::

    policy = load_policy(Path("config/policy.toml"))
    decision = policy.decide("az vm list", Context(principals=("agents",), target="web-01"))
"""

from bastion.policy.engine import DEFAULT_POLICY_PATH, Policy
from bastion.policy.incomplete import is_incomplete
from bastion.policy.loader import load_policy, run_examples
from bastion.policy.model import Action, Context, Decision, ReviewSpec, UnitDecision

__all__ = [
    "DEFAULT_POLICY_PATH",
    "Action",
    "Context",
    "Decision",
    "Policy",
    "ReviewSpec",
    "UnitDecision",
    "is_incomplete",
    "load_policy",
    "run_examples",
]
