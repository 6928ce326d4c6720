"""Helpers the reclassification, breach and recompute tests share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.compiled import Policy
from slabot.policy_files import BUNDLED_POLICIES, load_policy
from slabot.store.models import Base
from slabot.store.snapshot import Snapshot

# Zoom's premier plan, P2: first response 4h and restoration 8h on the customer's calendar
# (Los Angeles, weekdays 09:00-17:00, US holidays), next update 24h elapsed. Monday
# 2026-11-16 09:00 in Los Angeles is 17:00 UTC.
MONDAY_0900_LA = datetime(2026, 11, 16, 17, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def snapshot(**fields: Any) -> Snapshot:
    values: dict[str, Any] = {
        "source": "zendesk",
        "external_key": "1001",
        "policy": "zoom",
        "created_at": MONDAY_0900_LA,
        "updated_at": MONDAY_0900_LA,
        "priority": "P2",
        "plan": "premier",
        "environment": "production",
        "channel": "phone",
    }
    values.update(fields)
    return Snapshot(**values)


def rows(engine: Engine, model: type[Base]) -> list[Any]:
    with Session(engine) as session:
        return list(session.scalars(select(model).order_by(*model.__table__.primary_key)))


def count(engine: Engine, model: type[Base]) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def zoom_with_metrics(folder: Any) -> Policy:
    """zoom's policy, named ``zoom-metrics``, whose plans also set next_reply, agent_work
    (6h on 24x7) and requester_wait."""
    import yaml

    data = yaml.safe_load((BUNDLED_POLICIES / "zoom.yaml").read_text(encoding="utf-8"))
    data["name"] = "zoom-metrics"
    for plan in data["plans"].values():
        for targets in plan.get("targets", {}).values():
            targets["next_reply"] = "2h"
            targets["agent_work"] = {"after": "6h", "calendar": "24x7"}
            targets["requester_wait"] = "16h"
    path = folder / "zoom-metrics.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_policy(path)
