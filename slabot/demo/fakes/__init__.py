"""Stateful fake Zendesk, Jira and Slack servers on loopback: for `slabot demo` and the tests."""
