"""The ledger of model calls: each call is recorded under a content hash and never paid for twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from warrior.common import metrics
from warrior.common.ids import content_hash
from warrior.common.store import ObjectNotFound, ObjectStore

# The ledger key of the model call this thread is making: the expert client sends it along, so a
# server that already answered it (to a caller that died before recording) answers again for free.
# With it, the (expert, revision) the key names: the client calls only replicas serving that revision.
_current = threading.local()


def current_call_key() -> str | None:
    """The content hash of the call in progress on this thread, if it goes through the ledger."""
    return getattr(_current, "key", None)


def current_call_revision(expert: str) -> str | None:
    """The revision the ledger call in progress on this thread is keyed on, when it is a call to `expert`."""
    pinned: tuple[str, str] | None = getattr(_current, "pin", None)
    return pinned[1] if pinned is not None and pinned[0] == expert else None


class RevisionMismatch(RuntimeError):
    """An answer came from other weights than the revision its ledger key names; it is not recorded."""


class CallLedger:
    """Recorded model calls of one campaign, under `runs/<campaign>/calls/<hash>.json` (or, with
    `prefix`, under `<prefix>/<hash>.json`: an evaluation's calls go beside its results).

    The hash covers the expert, its weights' revision, the kind of call and the whole request
    (prompt, sampling, seed). A retried or redelivered task finds the record and reuses it. When two
    workers race on one call, the first record written wins and both return it, so downstream
    effects see one answer.

    The call is made to that revision: while invoke() runs, the expert client sends it only to
    replicas serving it, and the revision recorded is the one the answer names (`response["revision"]`,
    which must be the key's), so the key, the call and the lineage agree during a rolling update.
    """

    def __init__(
        self,
        store: ObjectStore,
        campaign: str,
        *,
        prefix: str | None = None,
        forget: Callable[[str, str, str], None] | None = None,
    ) -> None:
        """`forget(expert, revision, call key)` runs once a call is recorded: the experts' shared copy
        of its answer (warrior.common.answer_keys) is then no longer needed."""
        self._store = store
        self._campaign = campaign
        self._prefix = (prefix or f"runs/{campaign}/calls").rstrip("/")
        self._forget = forget

    def key(self, expert: str, revision: str, kind: str, request: dict[str, Any]) -> str:
        digest = content_hash(expert, revision, kind, request, length=32)
        return f"{self._prefix}/{digest}.json"

    def call(
        self,
        expert: str,
        revision: str,
        kind: str,
        request: dict[str, Any],
        invoke: Callable[[], dict[str, Any]],
    ) -> tuple[dict[str, Any], bool]:
        """The recorded response if there is one, else invoke() and record it; returns (response, reused).

        invoke() runs with the call pinned to `revision` (see current_call_revision); an answer naming
        another revision raises RevisionMismatch and is not recorded.
        """
        key = self.key(expert, revision, kind, request)
        try:
            recorded = self._store.get_json(key)["response"]
        except ObjectNotFound:
            pass
        else:
            metrics.LEDGER_CALLS.labels(kind, "reused").inc()
            return recorded, True
        _current.key, _current.pin = key, (expert, revision)
        try:
            response = invoke()
        finally:
            _current.key, _current.pin = None, None
        answered = response.get("revision") or revision
        if answered != revision:
            raise RevisionMismatch(
                f"expert {expert!r} answered a call keyed on revision {revision!r} with revision {answered!r}"
            )
        record = {
            "expert": expert,
            "revision": answered,
            "kind": kind,
            "request": request,
            "response": response,
            "recorded_at": time.time(),
        }
        if self._store.put_json(key, record, if_absent=True):
            metrics.LEDGER_CALLS.labels(kind, "paid").inc()
            recorded, reused = response, False
        else:
            # Another worker recorded this call first (a duplicate delivery ran it at the same time). The
            # call carried its ledger key, so the expert answered it once and gave both the same answer
            # (joined or cached): it counts as reused, and both go on with the recorded one.
            metrics.LEDGER_CALLS.labels(kind, "reused").inc()
            recorded, reused = self._store.get_json(key)["response"], True
        if self._forget is not None:
            self._forget(expert, answered, self.call_key(key))
        return recorded, reused

    @staticmethod
    def call_key(key: str) -> str:
        """The key a call carries to the expert (metadata): its ledger object's name, the content hash."""
        return key.rsplit("/", 1)[-1].removesuffix(".json")
