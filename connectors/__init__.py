"""Helpdesk connectors (Zendesk, Jira): thin adapters around the policy engine."""
