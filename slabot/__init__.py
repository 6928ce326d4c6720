"""slabot the application: command line, policy files and (later) store, service and Slack app."""
