"""`slabot demo`: the whole flow on a laptop, with local fake Zendesk, Jira and Slack."""
