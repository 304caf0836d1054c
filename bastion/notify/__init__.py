"""Chat notifications for held commands: Slack, Microsoft Teams and signed webhooks.

``build_notifiers(config)`` reads the ``[[notify]]`` blocks; ``add_routes(app, hub)`` serves the
Slack interactivity endpoint; ``await hub.start(broker)`` attaches to the approval broker. See
docs/approvals.md ("Chat notifications").
"""

from __future__ import annotations

from bastion.config import Config
from bastion.notify.base import DeliveryError, Notifier
from bastion.notify.config import NotifySpec, Scope, parse_notify_config
from bastion.notify.event import NotifyEvent
from bastion.notify.hub import NotifierHub
from bastion.notify.slack_http import add_routes


def make_notifier(spec: NotifySpec) -> Notifier:
    """The notifier of one parsed ``[[notify]]`` block."""
    if spec.type == "webhook":
        from bastion.notify.webhook import WebhookNotifier

        return WebhookNotifier(spec)
    if spec.type == "teams":
        from bastion.notify.teams import TeamsNotifier

        return TeamsNotifier(spec)
    from bastion.notify.slack import SlackNotifier

    return SlackNotifier(spec)


def build_notifiers(config: Config) -> NotifierHub:
    """A hub over every configured notifier (an idle, falsy hub when there are none).

    Raises ConfigError for a bad block or an unreadable / too-open secret file.
    """
    specs = parse_notify_config(config.raw, config.base_dir)
    return NotifierHub([make_notifier(s) for s in specs])


__all__ = [
    "DeliveryError",
    "Notifier",
    "NotifierHub",
    "NotifyEvent",
    "NotifySpec",
    "Scope",
    "add_routes",
    "build_notifiers",
    "make_notifier",
    "parse_notify_config",
]
