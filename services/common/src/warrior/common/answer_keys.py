"""Where the experts keep the answers they share in Redis, and how a caller lets them go.

An expert server writes each answer to a ledger-keyed call to Redis before replying (see
warrior.expert_inference.answer_cache), so a repeat of the call, after the caller or the expert died,
is answered without running the engine again. Once the caller has recorded the answer in its call
ledger, the ledger answers any repeat: the caller then deletes the shared copy, so Redis holds an
answer only between the engine giving it and the caller recording it (the TTL is the backstop for
a caller that died in between).
"""

from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)

PREFIX = "warrior:answer:"
# The expert service's model methods (protos/expert.proto) whose answers are shared.
METHODS = ("Complete", "Chat", "ScoreCandidates")


def answer_key(expert: str, revision: str, method: str, call_key: str) -> str:
    """The Redis key of one answer: every replica of the same expert and weights shares it."""
    return f"{PREFIX}{expert}:{revision}:{method}:{call_key}"


def forget_answer(client: redis.Redis, expert: str, revision: str, call_key: str) -> None:
    """Delete the shared copies of a recorded call's answer (one round trip); a Redis error is logged
    and left: the copies then expire with their TTL."""
    try:
        client.delete(*(answer_key(expert, revision, method, call_key) for method in METHODS))
    except redis.RedisError as exc:
        log.debug("answer cache: could not delete the recorded answer %s: %s", call_key, exc)
