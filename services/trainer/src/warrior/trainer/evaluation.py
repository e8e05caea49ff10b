"""pass@1 on HumanEval and MBPP: prompt a model once per problem, run its answer with the tests in
the sandbox, count the problems solved.

The pieces compose: `load_problems` reads a benchmark, `prompt_messages` is what the model is
shown, `extract_code` takes the program out of its reply, `program` appends the tests, and
`evaluate` runs them all into an `EvalResult` that `store_result` writes once to the object store.
`expert_generator` asks an expert over gRPC, greedily, so that a score is reproducible; with a
call ledger (`evaluate_expert` keeps one per model and revision, under `evals/<model>/<revision>/calls/`)
each answer is paid for once, so an evaluation killed half way and run again asks only for the rest.

The programs run through an `Executor` (`warrior.executor.runner`): `LocalExecutor`, this machine's
sandbox, where evaluation is run locally (`warrior eval`, the flywheel, tests); `QueueExecutor`, the
executor service, in the trainer's Celery worker, so that no model-generated code runs in its pod.
Answers are generated on a pool of threads while the ones already generated run, in batches.

A program counts as passed only when it exits with status 0 *and* reaches a completion token
written after the tests, so an answer that ends the process early (`sys.exit(0)`, `os._exit(0)`)
before the tests run is a failure ("early_exit"), not a pass.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from warrior.common.benchmarks import Problem, humaneval, mbpp
from warrior.common.ledger import CallLedger, RevisionMismatch
from warrior.common.store import ObjectStore, StoreError, validate_key
from warrior.executor.runner import Executor, LocalExecutor, Program
from warrior.executor.sandbox import SandboxResult, Status

__all__ = [
    "Benchmark",
    "ChatClient",
    "EvalResult",
    "EvalResultExists",
    "OutcomeStatus",
    "ProblemOutcome",
    "evaluate",
    "calls_prefix",
    "expert_generator",
    "extract_code",
    "load_problems",
    "program",
    "prompt_messages",
    "result_key",
    "store_result",
]

Benchmark = Literal["humaneval", "mbpp"]
OutcomeStatus = Status | Literal["generation_error"]

# How much of a completion and of a failing program's stderr an outcome keeps.
COMPLETION_EXCERPT_CHARS = 2_000
DETAIL_EXCERPT_CHARS = 600
# Greedy decoding: the same model and prompt give the same answer, hence the same score.
GREEDY_SEED = 0

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_OPEN_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n", re.MULTILINE)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}
_IMPORT_LINE = re.compile(r"^(?:import\s+\S|from\s+\S+\s+import\s)")


class EvalResultExists(StoreError):
    """A result is already stored for this model, revision and benchmark; results are write-once."""


class _Generation(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class ChatClient(Protocol):
    """What `expert_generator` needs of a client: `warrior.common.expert_client.ExpertClient` fits."""

    def chat(self, expert: str, messages: Sequence[dict[str, str]], sampling: dict[str, Any]) -> _Generation: ...


@dataclass(frozen=True)
class ProblemOutcome:
    """What became of one problem.

    `status` is the sandbox's ("passed", "failed", "timeout", "memory", "blocked", "killed",
    "error") or "generation_error" when no answer could be obtained; `limit` names what stopped
    the program (see `warrior.executor.sandbox.SandboxResult`, plus "early_exit"); `completion` is the start of
    the model's reply and `detail` the end of the program's stderr (or the generation error).
    """

    task_id: str
    passed: bool
    status: OutcomeStatus
    limit: str | None
    completion: str
    detail: str = ""
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "passed": self.passed,
            "status": self.status,
            "limit": self.limit,
            "completion": self.completion,
            "detail": self.detail,
            "duration_s": self.duration_s,
        }


@dataclass(frozen=True)
class EvalResult:
    """pass@1 over a set of problems, with every problem's outcome (in the order given)."""

    pass_at_1: float
    passed: int
    total: int
    outcomes: tuple[ProblemOutcome, ...]
    timeout_s: float
    memory_mb: int
    duration_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pass_at_1": self.pass_at_1,
            "passed": self.passed,
            "total": self.total,
            "timeout_s": self.timeout_s,
            "memory_mb": self.memory_mb,
            "duration_s": self.duration_s,
            "settings": dict(self.settings),
            "outcomes": [outcome.to_dict() for outcome in self.outcomes],
        }


def load_problems(
    benchmark: Benchmark,
    limit: int | None = None,
    mbpp_path: str | None = None,
    *,
    cache_dir: Path,
) -> list[Problem]:
    """The problems of a benchmark: HumanEval's 164, or MBPP's test split (task ids 11-510).

    MBPP is read from `mbpp_path`, else `WARRIOR_MBPP_PATH`, else fetched once into
    `cache_dir / "benchmarks"`. `limit` keeps the first problems only.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if benchmark == "humaneval":
        problems = humaneval()
    elif benchmark == "mbpp":
        problems = mbpp(mbpp_path, cache_dir / "benchmarks", test_split=True)
    else:
        raise ValueError(f"unknown benchmark {benchmark!r} (expected 'humaneval' or 'mbpp')")
    return problems if limit is None else problems[:limit]


def _first_test(problem: Problem) -> str:
    for line in problem.tests.splitlines():
        if line.strip().startswith("assert"):
            return line.strip()
    return problem.tests.strip().splitlines()[0] if problem.tests.strip() else ""


def prompt_messages(problem: Problem) -> list[dict[str, str]]:
    """The chat prompt for a problem.

    HumanEval: the function's signature and docstring in a code block, to be completed. MBPP: the
    task in words and its first test as an example, asking for a function in a code block.
    """
    if problem.benchmark == "humaneval":
        content = (
            "Complete the following Python function. Reply with the complete function, including its "
            "signature and the imports it needs, in a single ```python code block.\n\n"
            f"```python\n{problem.prompt.rstrip()}\n```"
        )
    else:
        content = (
            f"{problem.prompt.strip()}\n"
            f"Your code should pass this test:\n\n```python\n{_first_test(problem)}\n```\n\n"
            "Write the Python function in a single ```python code block."
        )
    return [{"role": "user", "content": content}]


def _fenced_code(reply: str) -> str | None:
    blocks = _FENCE.findall(reply)
    for tag, body in blocks:
        if tag.lower() in _PYTHON_TAGS:
            return str(body)
    if blocks:
        return str(blocks[0][1])
    opening = _OPEN_FENCE.search(reply)
    if opening:  # a reply cut off inside its code block
        return reply[opening.end() :]
    return None


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", code, re.MULTILINE) is not None


def extract_code(problem: Problem, reply: str) -> str:
    """The program in a model's reply.

    The first ```python block, else the first fenced block of any kind (a block the reply was cut
    off in counts), else the reply itself. For HumanEval, a reply that does not define the entry
    point is a completion of the prompt and is appended to it; one that does is given the
    prompt's imports (`from typing import List`...) it may rely on.
    """
    fenced = _fenced_code(reply)
    code = fenced if fenced is not None else reply
    if problem.benchmark != "humaneval" or not problem.entry_point:
        return code
    if not _defines(code, problem.entry_point):
        return problem.prompt + code
    present = set(code.splitlines())
    imports = [line for line in problem.prompt.splitlines() if _IMPORT_LINE.match(line) and line not in present]
    return "\n".join(imports) + "\n\n" + code if imports else code


def program(problem: Problem, code: str) -> str:
    """The program to run: the code, then the problem's tests (and `check(entry_point)` for HumanEval)."""
    text = f"{code.rstrip()}\n\n\n{problem.tests.rstrip()}\n"
    if problem.benchmark == "humaneval" and problem.entry_point:
        text += f"\n\ncheck({problem.entry_point})\n"
    return text


@dataclass(frozen=True)
class _Answer:
    """A generated answer, as the program to run (ending in a completion token)."""

    task_id: str
    reply: str
    token: str
    program: Program
    seconds: float


def _answer(
    problem: Problem, generate: Callable[[Problem], str], *, timeout_s: float, memory_mb: int
) -> _Answer | ProblemOutcome:
    """Generate the answer to one problem: the program to run, or the outcome when generation failed."""
    started = time.monotonic()
    try:
        reply = generate(problem)
    except RevisionMismatch:  # other weights answered: not this model's failure, and no score for it
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to answer is this problem's failure
        return ProblemOutcome(
            task_id=problem.task_id,
            passed=False,
            status="generation_error",
            limit=None,
            completion="",
            detail=f"{type(exc).__name__}: {exc}"[:DETAIL_EXCERPT_CHARS],
            duration_s=round(time.monotonic() - started, 3),
        )
    token = f"warrior-eval-done-{secrets.token_hex(8)}"
    source = program(problem, extract_code(problem, reply))
    # Written straight to the descriptor: immune to a program that replaced sys.stdout.
    source += f"\n__import__('os').write(1, b'\\n{token}\\n')\n"
    return _Answer(
        task_id=problem.task_id,
        reply=reply,
        token=token,
        program=Program(source, timeout_s=timeout_s, memory_mb=memory_mb),
        seconds=time.monotonic() - started,
    )


def _outcome(answer: _Answer, result: SandboxResult) -> ProblemOutcome:
    """Score a run: passed only with exit status 0 *and* the completion token in its output."""
    status: OutcomeStatus = result.status
    limit = result.limit
    passed = result.passed
    if passed and answer.token not in result.stdout:
        passed, status, limit = False, "failed", "early_exit"
    return ProblemOutcome(
        task_id=answer.task_id,
        passed=passed,
        status=status,
        limit=limit,
        completion=answer.reply[:COMPLETION_EXCERPT_CHARS],
        detail="" if passed else result.stderr[-DETAIL_EXCERPT_CHARS:],
        duration_s=round(answer.seconds + result.duration_s, 3),
    )


def evaluate(
    problems: Sequence[Problem],
    generate: Callable[[Problem], str],
    *,
    workers: int = 2,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> EvalResult:
    """pass@1 of `generate` on `problems`: one answer per problem, run with its tests in the sandbox.

    `generate` returns the model's reply (decoding is the caller's choice; `expert_generator` is
    greedy); when it raises, the problem is recorded as a "generation_error" failure and the
    evaluation goes on (unless it is a RevisionMismatch: the answer came from other weights than
    those evaluated, so the evaluation stops and is raised). `workers` answers are generated at a
    time, so `generate` is called from that many threads at once; the answers generated so far run
    as one batch through `executor` while the next ones are generated. `executor` defaults to a
    `LocalExecutor` (this machine's sandbox, as many programs at once as it has CPUs), made for this
    call and closed after it; an executor's error (the executor service unreachable, say) is raised,
    never scored. `progress(done, total)` is called from the calling thread after each problem.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    started = time.monotonic()
    total = len(problems)
    outcomes: list[ProblemOutcome | None] = [None] * total
    done = 0

    def record(index: int, outcome: ProblemOutcome) -> None:
        nonlocal done
        outcomes[index] = outcome
        done += 1
        if progress is not None:
            progress(done, total)

    own: LocalExecutor | None = None
    if executor is None:
        executor = own = LocalExecutor()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="warrior-eval") as pool:
            waiting: dict[Future[_Answer | ProblemOutcome], int] = {
                pool.submit(_answer, problem, generate, timeout_s=timeout_s, memory_mb=memory_mb): index
                for index, problem in enumerate(problems)
            }
            try:
                while waiting:
                    finished, _ = wait(waiting, return_when=FIRST_COMPLETED)
                    batch: list[tuple[int, _Answer]] = []
                    for future in sorted(finished, key=waiting.__getitem__):
                        index = waiting.pop(future)
                        answer = future.result()
                        if isinstance(answer, ProblemOutcome):
                            record(index, answer)
                        else:
                            batch.append((index, answer))
                    if batch:
                        results = executor.run_many([answer.program for _, answer in batch])
                        for (index, answer), result in zip(batch, results, strict=True):
                            record(index, _outcome(answer, result))
            except BaseException:
                for future in waiting:
                    future.cancel()
                raise
    finally:
        if own is not None:
            own.close()
    final = tuple(outcome for outcome in outcomes if outcome is not None)
    passed = sum(outcome.passed for outcome in final)
    return EvalResult(
        pass_at_1=passed / total if total else 0.0,
        passed=passed,
        total=total,
        outcomes=final,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        duration_s=round(time.monotonic() - started, 3),
        settings={"workers": workers},
    )


def expert_generator(
    client: ChatClient,
    expert: str,
    max_tokens: int = 512,
    *,
    ledger: CallLedger | None = None,
    revision: str = "",
) -> Callable[[Problem], str]:
    """A `generate` for `evaluate` that asks `expert` through the expert-inference client, greedily
    (temperature 0, a fixed seed) so that the same model gives the same score. With a `ledger`, each
    call goes through it as `revision`'s: an answer recorded earlier is reused, never asked again."""
    sampling = {"temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens, "seed": GREEDY_SEED}

    def generate(problem: Problem) -> str:
        messages = prompt_messages(problem)
        if ledger is None:
            return str(client.chat(expert, messages, dict(sampling)).to_dict()["text"])
        request = {"messages": messages, "sampling": dict(sampling)}
        reply, _ = ledger.call(
            expert, revision, "chat", request, lambda: client.chat(expert, messages, dict(sampling)).to_dict()
        )
        return str(reply["text"])

    return generate


def result_key(*, model: str, revision: str, benchmark: str) -> str:
    """`evals/<model>/<revision>/<benchmark>.json`; a '/' inside a name (an `org/model` id)
    becomes '--' so that every part stays one key segment."""
    parts = [part.replace("/", "--") for part in (model, revision, benchmark)]
    return validate_key(f"evals/{parts[0]}/{parts[1]}/{parts[2]}.json")


def calls_prefix(*, model: str, revision: str) -> str:
    """`evals/<model>/<revision>/calls`: where the call ledger of a model's evaluations keeps its calls."""
    parts = [part.replace("/", "--") for part in (model, revision)]
    return validate_key(f"evals/{parts[0]}/{parts[1]}/calls")


def store_result(store: ObjectStore, result: EvalResult, *, model: str, revision: str, benchmark: str) -> str:
    """Write the result and every problem's outcome under `result_key(...)`, once; return the key.

    Raises EvalResultExists when a result is already stored there (scores are never overwritten).
    """
    key = result_key(model=model, revision=revision, benchmark=benchmark)
    payload = {"model": model, "revision": revision, "benchmark": benchmark, **result.to_dict()}
    if not store.put_json(key, payload, if_absent=True):
        raise EvalResultExists(f"an evaluation result is already stored under {key!r}")
    return key


def evaluate_expert(
    client: Any,
    store: ObjectStore,
    expert: str,
    revision: str,
    benchmark: Literal["humaneval", "mbpp"],
    *,
    cache_dir: Path,
    limit: int | None = None,
    max_tokens: int = 512,
    workers: int = 2,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """pass@1 of a registered expert on a benchmark, stored once per (expert, revision, benchmark).

    A result already stored for this revision and problem set is returned as is (with ``reused``),
    so a repeated or redelivered evaluation costs nothing. An evaluation that did not get that far
    (killed, redelivered) left its model calls in the call ledger (`calls_prefix`): run again, it
    asks the model only for the answers it had not got. A partial run (``limit``) is stored under
    its own name (``humaneval-first20``), never in place of the full benchmark's result. The
    programs run through `executor` (see `evaluate`; this machine's sandbox by default).
    """
    label = benchmark if limit is None else f"{benchmark}-first{limit}"
    key = result_key(model=expert, revision=revision, benchmark=label)
    if store.exists(key):
        stored = dict(store.get_json(key))
        return stored | {"key": key, "reused": True}
    problems = load_problems(benchmark, limit, cache_dir=cache_dir)
    # A recorded answer's shared copy in the experts' Redis is let go (a client without one keeps none).
    forget = getattr(client, "forget_answer", None)
    ledger = CallLedger(store, f"eval-{expert}", prefix=calls_prefix(model=expert, revision=revision), forget=forget)
    result = evaluate(
        problems,
        expert_generator(client, expert, max_tokens, ledger=ledger, revision=revision),
        workers=workers,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        progress=progress,
        executor=executor,
    )
    store_result(store, result, model=expert, revision=revision, benchmark=label)
    return dict(store.get_json(key)) | {"key": key, "reused": False}
