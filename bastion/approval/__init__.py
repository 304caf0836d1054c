"""Approvals: a reviewed command waits for named operators' sign-off (TOTP, deadline, N eyes).

The relay submits a held command to the ``ApprovalBroker`` and awaits ``wait()``; operators decide
with ``bastion approvals approve|deny`` or on the web page (``add_routes``). See docs/approvals.md.
"""

from bastion.approval.broker import ApprovalBroker
from bastion.approval.config import ApprovalsConfig, parse_approvals_config
from bastion.approval.ids import new_request_id, parse_request_id
from bastion.approval.model import ApprovalRefused, ApprovalRequest, DecisionRecord, Outcome, State
from bastion.approval.operators import Operator, OperatorStore

# Exit statuses the agent sees (the relay sets them; documented in docs/approvals.md).
EXIT_DENIED_BY_OPERATOR = 77
EXIT_EXPIRED = 78
EXIT_DEFERRED = 75

__all__ = [
    "EXIT_DEFERRED",
    "EXIT_DENIED_BY_OPERATOR",
    "EXIT_EXPIRED",
    "ApprovalBroker",
    "ApprovalRefused",
    "ApprovalRequest",
    "ApprovalsConfig",
    "DecisionRecord",
    "Operator",
    "OperatorStore",
    "Outcome",
    "State",
    "new_request_id",
    "parse_approvals_config",
    "parse_request_id",
]
