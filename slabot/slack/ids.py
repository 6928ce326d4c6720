"""The action, view and block ids that tie Slack's interactive payloads to slabot's listeners."""

from __future__ import annotations

RECLASSIFY = "sla_reclassify"
"""Button: open the reclassify modal; ``value`` is the ticket's ref (``zendesk:123``)."""
OPEN = "sla_open"
"""Link button to the ticket in its helpdesk (acknowledged, nothing else)."""
SNOOZE_1H = "sla_snooze_1h"
SNOOZE_4H = "sla_snooze_4h"
"""Buttons on a nudge: open the snooze modal; ``value`` is the nudge id."""
SNOOZE_HOURS = {SNOOZE_1H: 1, SNOOZE_4H: 4}
ACK = "sla_ack"
"""Button on a breached nudge, "I'm on it": ``value`` is the nudge id."""
ASSIGN = "sla_assign"
"""Button on a breached nudge, "Assign to me" (written back to the helpdesk): the nudge id."""

RECLASSIFY_VIEW = "sla_reclassify_modal"
SNOOZE_VIEW = "sla_snooze_modal"
NOTICE_VIEW = "sla_notice_modal"

PRIORITY_BLOCK = "priority"
REASON_BLOCK = "reason"
VALUE_ACTION = "value"
"""The action id of the single input element of an input block."""
