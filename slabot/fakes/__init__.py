"""Stateful fake Zendesk, Jira and Slack servers on loopback, for `slabot demo` and the tests.

They import only the standard library and each other (`tests/unit/test_layers.py` keeps it so)."""
