"""Block Kit checks of the fake Slack (shipped with slabot); the tests import them here."""

from slabot.demo.fakes.slack_blocks import (
    LIMITS,
    MAX_BLOCKS,
    block_problems,
    message_problems,
    view_problems,
)

__all__ = ["LIMITS", "MAX_BLOCKS", "block_problems", "message_problems", "view_problems"]
