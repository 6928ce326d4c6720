"""The Slack app: look up and reclassify tickets, nudges before breaches, digests, App Home."""
