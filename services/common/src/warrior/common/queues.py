"""The pipeline's queues and task names: the one source that workers, senders and the chart share."""

from __future__ import annotations

from typing import Final

MINE: Final = "mine"
SCREEN: Final = "screen"
BATTLE: Final = "battle"
SCORE: Final = "score"
DATASET: Final = "dataset"
TRAIN: Final = "train"
# Untrusted, model-generated programs, run by the executor service in its sandbox.
EXECUTE: Final = "execute"

QUEUES: Final = (MINE, SCREEN, BATTLE, SCORE, DATASET, TRAIN, EXECUTE)

# Task names are strings, so a stage enqueues the next one without importing another service.
TASK_MINE: Final = "warrior.mine"
TASK_SCREEN: Final = "warrior.screen"
TASK_BATTLE: Final = "warrior.battle"
TASK_SCORE: Final = "warrior.score"
TASK_FINALIZE: Final = "warrior.finalize"
TASK_COLLECT: Final = "warrior.collect"
TASK_BUILD: Final = "warrior.build"
TASK_BACKFILL: Final = "warrior.backfill"
TASK_MATCHMAKE: Final = "warrior.matchmake"
TASK_TRAIN: Final = "warrior.train"
TASK_EVALUATE: Final = "warrior.evaluate"
# A trained model (or a base model's folder) converted to GGUF and put in the object store, for serving.
TASK_EXPORT: Final = "warrior.export"
# A chunk of programs run in the executor's sandbox; its results come back through the result backend.
TASK_RUN_PROGRAMS: Final = "warrior.run_programs"

PRIORITY_NEWCOMER: Final = 0
PRIORITY_DEFAULT: Final = 5

TASK_QUEUES: Final = {
    TASK_MINE: MINE,
    TASK_SCREEN: SCREEN,
    TASK_BATTLE: BATTLE,
    TASK_BACKFILL: BATTLE,
    TASK_MATCHMAKE: SCORE,
    TASK_SCORE: SCORE,
    TASK_FINALIZE: SCORE,
    TASK_COLLECT: DATASET,
    TASK_BUILD: DATASET,
    TASK_TRAIN: TRAIN,
    TASK_EVALUATE: TRAIN,
    TASK_EXPORT: TRAIN,
    TASK_RUN_PROGRAMS: EXECUTE,
}

# Which service's worker consumes which queues (one worker process per service in the local stack).
SERVICE_QUEUES: Final = {
    # A worker's queues in this order are its preference (kombu's "priority" order strategy): screening
    # before mining, so requests flow on as they are mined instead of all mining finishing first.
    "instruction_miner": (SCREEN, MINE),
    "judge": (BATTLE,),
    "scorer": (SCORE,),
    "dataset_builder": (DATASET,),
    "trainer": (TRAIN,),
    "executor": (EXECUTE,),
}

DEFAULT_GRPC_PORT: Final = 50051
# The experts' plain-text health port (`warrior-expert --health-port`): grpc.health.v1 alone, for
# probes that speak neither TLS nor tokens while those guard DEFAULT_GRPC_PORT.
DEFAULT_HEALTH_PORT: Final = 50052
