"""The Celery application every pipeline worker shares, with the reliability settings of the design."""

from __future__ import annotations

import os

from celery import Celery

from warrior.common import queues
from warrior.common.settings import Settings, celery_broker_url


def make_celery(service: str, settings: Settings | None = None) -> Celery:
    """A Celery app bound to the stack's Redis.

    Reliability: a task is acknowledged only after it finished (acks_late), a task whose worker
    died is rejected back to the queue (reject_on_worker_lost), a worker holds one message at a
    time (prefetch 1), and the visibility timeout outlasts the longest task so a slow task is not
    handed to a second worker while the first still runs.
    """
    settings = settings or Settings.from_env()
    broker = celery_broker_url(settings.redis_url)
    visibility = float(os.environ.get("WARRIOR_VISIBILITY_TIMEOUT_S", "3600"))
    app = Celery(f"warrior.{service}", broker=broker, backend=broker)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        task_routes={name: {"queue": queue} for name, queue in queues.TASK_QUEUES.items()},
        task_default_queue=queues.MINE,
        # Redis emulates priorities with one list per level, 0 first: newcomers' backfill battles
        # are sent at 0 so they run before the campaign's regular work (sent at the default, 5).
        task_default_priority=5,
        task_queue_max_priority=9,
        broker_transport_options={
            "priority_steps": list(range(10)),
            "queue_order_strategy": "priority",
            "visibility_timeout": visibility,
            # Shorter than kombu's default so a killed worker's messages come back sooner.
            "unacked_restore_interval": 10,
        },
        result_backend_transport_options={"visibility_timeout": visibility},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app
