"""slabot's durable state: tickets, history, decisions and the outbox (SQLAlchemy + Alembic)."""
