"""A trained model joins a cluster's roster by a chart value: the values file `warrior flywheel
--stack cluster` writes (`extraExperts`) renders one more expert Deployment, whose init container
fetches the exported GGUF file from the store, beside the release's own `experts`."""

from __future__ import annotations

import sys
from pathlib import Path

from warrior.cli.flywheel import chart_values
from warrior.common.campaign_config import ExpertConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_helpers import CHART, by_name, containers, is_expert, render  # noqa: E402


def test_the_flywheels_values_file_adds_its_models_to_the_releases_experts() -> None:
    served = [
        {"name": "smollm2-135m-f16", "key": "exports/smollm2-135m/base-0123456789ab/gguf/",
         "file": "smollm2-135m-f16.gguf", "revision": "aaaa000011112222", "sha256": "a" * 64},
        {"name": "smollm2-135m-arena", "key": "exports/smollm2-135m-arena/r-0123456789ab/gguf/",
         "file": "smollm2-135m-arena-f16.gguf", "revision": "bbbb000011112222", "sha256": "b" * 64},
    ]  # fmt: skip
    values = chart_values(served, ExpertConfig(name="smollm2-135m", parallel=2, context_length=2048))
    docs = render(CHART / "ci" / "minimal-cpu-values.yaml", values)
    experts = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment" and is_expert(d)}
    # The release's own experts stay; the flywheel's are added (a values file of its own, no list to repeat).
    assert {"arena-warrior-expert-smollm2-135m", "arena-warrior-expert-qwen2-5-coder-0-5b"} <= experts
    trained = by_name(docs, "Deployment", "arena-warrior-expert-smollm2-135m-arena")
    command = containers(trained)[0]["command"]
    assert command[command.index("--name") + 1] == "smollm2-135m-arena"
    assert command[command.index("--model") + 1] == "/models/smollm2-135m-arena-f16.gguf"
    assert command[command.index("--parallel") + 1] == "2"
    [fetch] = trained["spec"]["template"]["spec"]["initContainers"]
    assert fetch["command"][fetch["command"].index("--prefix") + 1] == served[1]["key"]
    annotations = trained["spec"]["template"]["metadata"]["annotations"]
    assert annotations["warrior.dev/revision"] == "bbbb000011112222"
    assert by_name(docs, "Deployment", "arena-warrior-expert-smollm2-135m-f16")
