"""The Jira connector: mapping (pure), client (the only network code), webhook, poller,
write-back. See docs/jira.md."""
