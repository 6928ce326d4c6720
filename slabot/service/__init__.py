"""The service a support team deploys: ``slabot run`` (HTTP endpoints, scheduler, dashboard)."""
