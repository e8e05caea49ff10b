"""A cluster in miniature: the chart's rendered workloads run as local processes, one per pod.

Every Deployment becomes `replicas` processes and every Job one, each started with exactly the
container command and environment the chart renders, resolved as the kubelet would:

- `value` as is; `secretKeyRef` from the Secrets the test provides; `fieldRef` POD_IP -> 127.0.0.1
  (every pod shares this host), POD_NAME -> the pod's name;
- volumes: an emptyDir is a fresh folder per pod, a Secret or ConfigMap volume a folder holding its
  items, a PersistentVolumeClaim a folder shared by every pod; paths under a mount point, in the
  environment and in the arguments, are rewritten to the folder that stands in for it;
- ports: pods share one IP here, so an expert's `--port` and `--health-port` get free ports.

Nothing else is passed: no variable of the test process reaches a pod but PATH and the locale.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chart_helpers import containers

Doc = dict[str, Any]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Pod:
    name: str
    component: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        handle.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a node failure or the OOM killer would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after the grace period, as a pod deletion does."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()


class MiniCluster:
    """The pods of a rendered release; `secrets` maps Secret name -> key -> value."""

    def __init__(self, docs: list[Doc], secrets: dict[str, dict[str, str]], root: Path, shared: dict[str, Path]):
        self.docs, self.secrets, self.root, self.shared = docs, secrets, root, shared
        self.config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
        self.pods: list[Pod] = []
        for doc in docs:
            if doc["kind"] == "Deployment":
                for index in range(int(doc["spec"].get("replicas", 1))):
                    self.pods.append(self._pod(doc, f"{doc['metadata']['name']}-{index}"))
            elif doc["kind"] == "Job":
                self.pods.append(self._pod(doc, f"{doc['metadata']['name']}-job"))

    def of(self, component: str) -> list[Pod]:
        return [p for p in self.pods if p.component == component]

    def _volumes(self, doc: Doc, pod_dir: Path) -> dict[str, Path]:
        folders = {}
        for volume in doc["spec"]["template"]["spec"].get("volumes", []):
            name, folder = volume["name"], pod_dir / f"vol-{volume['name']}"
            if "persistentVolumeClaim" in volume:
                folder = self.shared[volume["persistentVolumeClaim"]["claimName"]]
            elif "secret" in volume or "configMap" in volume:
                source = volume.get("secret") or volume["configMap"]
                data = (self.secrets[source["secretName"]] if "secret" in volume
                        else self.config_maps[source["name"]])  # fmt: skip
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                folder.mkdir(parents=True, exist_ok=True)
                for item in items:
                    (folder / item["path"]).write_text(data[item["key"]])
            folder.mkdir(parents=True, exist_ok=True)
            folders[name] = folder
        return folders

    def _pod(self, doc: Doc, name: str) -> Pod:
        pod_dir = self.root / name
        pod_dir.mkdir(parents=True, exist_ok=True)
        folders = self._volumes(doc, pod_dir)
        container = containers(doc)[0]
        mounts = [(m["mountPath"].rstrip("/"), folders[m["name"]] / m.get("subPath", ""))
                  for m in container.get("volumeMounts", [])]  # fmt: skip
        mounts.sort(key=lambda m: -len(m[0]))  # the deepest mount point first

        def local(value: str) -> str:
            for mount, folder in mounts:
                if value == mount or value.startswith(mount + "/"):
                    return str(folder) + value[len(mount) :]
            return value

        env = {"PATH": f"{BIN}:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = local(str(item["value"]))
            elif "secretKeyRef" in item["valueFrom"]:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[ref["name"]][ref["key"]]
            else:
                path = item["valueFrom"]["fieldRef"]["fieldPath"]
                env[item["name"]] = {"status.podIP": "127.0.0.1", "metadata.name": name}[path]
        argv = [local(str(a)) for a in container["command"] + container.get("args", [])]
        argv[0] = str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0]
        ports = {}
        for flag in ("--port", "--health-port"):
            if flag in argv:
                ports[flag] = free_port()
                argv[argv.index(flag) + 1] = str(ports[flag])
        component = doc["metadata"]["labels"].get("app.kubernetes.io/component", "")
        return Pod(name, component, argv, env, pod_dir / "log.txt", ports=ports)

    def start(self, *components: str) -> None:
        for pod in self.pods:
            if pod.component in components and pod.proc is None:
                pod.start()

    def stop(self) -> None:
        for pod in self.pods:
            pod.stop()

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.log.read_text(errors='replace')[-tail:]}" for p in self.pods if p.log.exists()
        )

    def wait_for(self, check: Any, timeout_s: float, what: str, context: Any = None) -> None:
        """Poll `check` until true; on timeout fail with the pods' logs (and `context()`, when given)."""
        deadline = time.monotonic() + timeout_s
        while not check():
            dead = [p.name for p in self.pods if p.proc is not None and p.proc.poll() not in (None, 0)]
            if time.monotonic() > deadline:
                extra = f"\n{context()}" if context is not None else ""
                raise AssertionError(f"{what}: not after {timeout_s:.0f}s (exited: {dead}){extra}\n{self.logs()}")
            time.sleep(0.5)
