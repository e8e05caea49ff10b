"""The flywheel drives a stack through tasks, in turns, without ever stopping a stack it did not start.

Fast: the stack, the Celery app and the campaign operations are stand-ins that answer at once and
record what they were asked; the records go to a real object store (a folder) and Redis is the
test one. The whole loop on real models is tests/test_flywheel.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import warrior.cli.flywheel as flywheel_module
from warrior.cli import campaign as ops
from warrior.cli.flywheel import FlywheelRun
from warrior.cli.flywheel_config import load_flywheel
from warrior.common import queues
from warrior.common.campaign_config import CampaignConfig
from warrior.common.runtime import get_runtime
from warrior.common.store import open_store
from warrior.dataset_builder.versions import build_version
from warrior.trainer.config import parse_train_config


class _Stack:
    """The local stack: records up/add/down; `down` of a stack someone else started is a test failure."""

    def __init__(self, running: bool) -> None:
        self.up_here = False
        self.is_running = running
        self.calls: list[tuple[Any, ...]] = []

    def running(self) -> list[str]:
        return ["proc"] if self.is_running else []

    def up(self, config: CampaignConfig, **kwargs: Any) -> dict[str, Any]:
        assert not self.is_running, "started a second local stack over a running one"
        self.calls.append(("up", [e.name for e in config.experts], tuple(kwargs.get("services", ()))))
        self.is_running = self.up_here = True
        return {}

    def add(self, experts: list[Any], **kwargs: Any) -> list[Any]:
        self.calls.append(("add", [e.name for e in experts], tuple(kwargs.get("services", ()))))
        return []

    def down(self, **kwargs: Any) -> list[str]:
        if not self.up_here:
            raise AssertionError("the flywheel stopped a local stack it did not start")
        self.calls.append(("down",))
        self.is_running = False
        return []


class _Result:
    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value

    def get(self, timeout: float | None = None) -> dict[str, Any]:
        return self.value


class _App:
    """The Celery app: answers the trainer's tasks at once, as the trainer worker would."""

    def __init__(self, tmp_path: Path) -> None:
        self.sent: list[tuple[str, list[Any], dict[str, Any]]] = []
        self.tmp = tmp_path
        self.consumed = ["mine", "battle", "train"]

    def send_task(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> _Result:
        self.sent.append((name, list(args), dict(kwargs)))
        if name == queues.TASK_TRAIN:
            config = args[0]
            parse_train_config(config, "<task config>")  # what the trainer's worker reads first
            run = f"r-{len(self.sent)}"
            return _Result({"model": config["output"], "run": run, "steps": 2, "losses": [[1, 1.5], [2, 1.25]],
                            "final_key": f"checkpoints/{config['output']}/{run}/final/"})  # fmt: skip
        if name == queues.TASK_EXPORT:
            source, model, gguf_type = args
            if source.startswith("checkpoints/"):
                model, run = source.split("/")[1:3]
                key = f"exports/{model}/{run}/gguf/"
            else:
                key = f"exports/{model}/base-abc/gguf/"
            path = self.tmp / key / f"{model}-{gguf_type}.gguf"
            return _Result({"key": key, "file": path.name, "path": str(path), "sha256": "ab" * 32,
                            "revision": f"rev-{model}"})  # fmt: skip
        if name == queues.TASK_EVALUATE:
            expert, benchmark = args
            key = f"evals/{expert}/rev/{benchmark}.json"
            outcomes = [{"task_id": f"{benchmark}/0", "passed": True}, {"task_id": f"{benchmark}/1", "passed": False}]
            get_runtime().store.put_json(key, {"pass_at_1": 0.5, "outcomes": outcomes}, if_absent=False)
            return _Result({"key": key, "pass_at_1": 0.5, "passed": 1, "total": 2,
                            "reused": False, "expert": expert, "revision": f"rev-{expert}"})  # fmt: skip
        raise AssertionError(f"unexpected task {name}")

    def close(self) -> None:
        pass

    @property
    def control(self) -> Any:
        """Remote control: which queues the stack's workers consume (`consumed`)."""
        app = self

        class Inspect:
            def active_queues(self) -> dict[str, list[dict[str, str]]]:
                return {f"{q}@pod": [{"name": q}] for q in app.consumed}

        class Control:
            def inspect(self, timeout: float) -> Inspect:
                return Inspect()

        return Control()


class _Campaigns:
    """The campaign operations: every campaign is done at once with a few rows and a leaderboard."""

    def __init__(self) -> None:
        self.started: dict[str, CampaignConfig] = {}
        self.finalized: list[tuple[str, str]] = []
        self.built: list[dict[str, Any]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        campaigns = self

        class State:
            def __init__(self, redis: Any, campaign: str) -> None:
                self.campaign = campaign

            def exists(self) -> bool:
                return self.campaign in campaigns.started

        def start(rt: Any, app: Any, config: CampaignConfig, **kwargs: Any) -> str:
            self.started[config.campaign_id()] = config
            return config.campaign_id()

        def wait(rt: Any, campaign: str, **kwargs: Any) -> dict[str, Any]:
            assert campaign in self.started
            return {"instructions": {"kept": 3, "dropped": 0}, "battles": 3, "votes": 6}

        def finalize(app: Any, campaign: str, *args: Any, verdicts: str = "arena") -> dict[str, Any]:
            self.finalized.append((campaign, verdicts))
            names = self.started[campaign].expert_names
            board = [{"expert": n, "rating": 0.0, "ci_low": -1.0, "ci_high": 1.0, "battles": 2, "win_rate": 0.5}
                     for n in names]  # fmt: skip
            return {"leaderboard": board, "judges": {}, "ratings_key": f"runs/{campaign}/ratings/{verdicts}.json"}

        def build_dataset(
            app: Any, campaign: str, name: str, *args: Any, ratings_key: str | None = None, winners: str = "ratings",
            instructions: list[str] | None = None, seed: int = 0,
        ) -> dict[str, Any]:  # fmt: skip
            """A real dataset version: three rows whose winner is the first expert (the second, for random)."""
            assert campaign in self.started
            experts = self.started[campaign].expert_names
            winner = experts[1] if winners == "random" else experts[0]
            ids = instructions or [f"i{k}" for k in range(3)]
            rows = [{"messages": [{"role": "user", "content": f"request {i}"}, {"role": "assistant", "content": "x"}],
                     "lineage": {"instruction_id": i, "winner": winner, "verification": {"status": "verified"}}}
                    for i in ids]  # fmt: skip
            key = ratings_key or f"runs/{campaign}/ratings/arena.json"
            self.built.append({"name": name, "ratings_key": key, "winners": winners, "instructions": instructions})
            return build_version(get_runtime().store, name, rows, campaigns=[campaign], ratings_key=key, leaderboard=[])

        monkeypatch.setattr(ops, "CampaignState", State)
        monkeypatch.setattr(ops, "start", start)
        monkeypatch.setattr(ops, "wait", wait)
        monkeypatch.setattr(ops, "finalize", finalize)
        monkeypatch.setattr(ops, "build_dataset", build_dataset)


def _write(tmp_path: Path, campaign_keys: dict[str, Any] | None = None, **overrides: object) -> Path:
    campaign = {
        "campaign": "fw-arena",
        "experts": [{"name": n, "engine": "zero-latency-test"} for n in ("alpha", "beta", "gamma")],
        "dataset": {"name": "fw-arena"},
    } | (campaign_keys or {})
    (tmp_path / "campaign.yaml").write_text(yaml.safe_dump(campaign))
    (tmp_path / "base-model").mkdir(exist_ok=True)
    flywheel = {
        "flywheel": "fw-fast",
        "campaign": "campaign.yaml",
        "target": {"name": "smol-arena", "base_expert": "alpha", "base_model": "base-model"},
        "train": {"training": {"max_steps": 2}},
        "evaluate": {"benchmarks": ["humaneval"], "limit": 2},
    } | overrides
    path = tmp_path / "flywheel.yaml"
    path.write_text(yaml.safe_dump(flywheel))
    return path


@pytest.fixture()
def fakes(warrior_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    app = _App(tmp_path)
    campaigns = _Campaigns()
    campaigns.install(monkeypatch)
    stacks: list[_Stack] = []
    monkeypatch.setattr(flywheel_module, "make_celery", lambda *a, **k: app)
    monkeypatch.setattr(flywheel_module, "LocalStack", lambda *a, **k: stacks[0])
    audited: list[list[str]] = []

    def audit(rows: list[dict[str, Any]], config: Any, cache: Path, score: Any, judge_name: str | None) -> Any:
        """The final rows' decontamination (its own tests run it for real): records which rows it was given."""
        audited.append([r["lineage"]["instruction_id"] for r in rows])
        nothing = {"hits": [], "nearest": {}, "strongest": {}}
        return {"rows": len(rows), "benchmarks": ["humaneval"], "overlap": 0,
                "ngram": nothing | {"n": 13, "checked": "x"}, "embedding": nothing | {"threshold": 0.9},
                "rewording": nothing | {"ran": False, "threshold": 3.0, "judge": judge_name,
                                        "judged_rows": 0}}  # fmt: skip

    monkeypatch.setattr(flywheel_module, "audit_rows", audit)
    return {"app": app, "campaigns": campaigns, "stacks": stacks, "audited": audited}


def _run(path: Path, stack: str = "local") -> tuple[dict[str, Any], list[str]]:
    said: list[str] = []
    if stack == "local":  # the default
        report = FlywheelRun(load_flywheel(path), echo=said.append).run()
    else:
        report = FlywheelRun(load_flywheel(path, local_model=False), echo=said.append, stack=stack).run()
    return report, said


def test_a_running_local_stack_is_used_and_left_running(fakes: dict[str, Any], tmp_path: Path) -> None:
    stack = _Stack(running=True)
    fakes["stacks"].append(stack)
    report, _ = _run(_write(tmp_path))
    assert [c[0] for c in stack.calls] == ["add", "add"]  # never up, never down
    # What the flywheel needs joined the running stack: the trainer's worker, then the models it made.
    assert "trainer" in stack.calls[0][2] and stack.calls[0][1] == ["alpha", "beta", "gamma"]
    assert {"alpha-f16", "smol-arena"} <= set(stack.calls[1][1])
    # Training, export and evaluation were tasks on the trainer's queue, not work in this process.
    names = [name for name, _, _ in fakes["app"].sent]
    assert names == [queues.TASK_TRAIN, queues.TASK_EXPORT, queues.TASK_EXPORT, queues.TASK_EVALUATE,
                     queues.TASK_EVALUATE]  # fmt: skip
    assert all(queues.TASK_QUEUES[name] == queues.TRAIN for name in names)
    train_config = fakes["app"].sent[0][1][0]
    assert train_config["base_model"] == str(tmp_path / "base-model") and train_config["output"] == "smol-arena"
    assert report["evaluation"]["humaneval"]["base"]["expert"] == "alpha-f16"
    assert report["evaluation"]["humaneval"]["trained"]["revision"] == "rev-smol-arena"


def test_a_stack_the_flywheel_started_is_stopped_even_when_a_step_fails(fakes: dict[str, Any], tmp_path: Path) -> None:
    stack = _Stack(running=False)
    fakes["stacks"].append(stack)
    _run(_write(tmp_path))
    assert [c[0] for c in stack.calls] == ["up", "add", "down"]
    assert "trainer" in stack.calls[0][2]
    # A failing step still stops the stack it started, and names the step.
    stack.calls.clear()

    class Failed:
        def get(self, timeout: float | None = None) -> dict[str, Any]:
            raise RuntimeError("trainer exploded")  # a task's error, re-raised by its result

    fakes["app"].send_task = lambda *a, **k: Failed()
    with pytest.raises(flywheel_module.FlywheelError, match=r"\[train\].*trainer exploded"):
        _run(_write(tmp_path, flywheel="fw-fails"))
    assert [c[0] for c in stack.calls] == ["up", "down"]


def test_turns_train_each_turns_model_again_and_record_each_turn(fakes: dict[str, Any], tmp_path: Path) -> None:
    stack = _Stack(running=False)
    fakes["stacks"].append(stack)
    path = _write(tmp_path, turns=2)
    report, _ = _run(path)
    store = open_store(f"file://{tmp_path / 'store'}")
    for turn in (1, 2):
        for step in ("campaign", "train", "export", "register", "evaluate", "followup"):
            assert store.exists(f"flywheel/fw-fast/turn-{turn}/{step}.json"), (turn, step)
    trains = [args[0] for name, args, _ in fakes["app"].sent if name == queues.TASK_TRAIN]
    assert [t["output"] for t in trains] == ["smol-arena", "smol-arena-t2"]
    # Turn 2 trains turn 1's model, on the dataset of the follow-up campaign turn 1's model battled in.
    first = store.get_json("flywheel/fw-fast/turn-1/train.json")
    assert trains[1]["base_model"] == first["final_key"]
    followup_data = store.get_json("flywheel/fw-fast/turn-1/followup.json")["campaign"]
    assert followup_data == "fw-arena-followup"
    assert trains[1]["dataset"]["name"] == "fw-arena-followup"
    assert (
        trains[1]["dataset"]["version"] == store.get_json("flywheel/fw-fast/turn-2/campaign.json")["dataset"]["version"]
    )
    assert [t["turn"] for t in report["turns"]] == [1, 2]
    second = report["turns"][1]
    humaneval = second["evaluation"]["humaneval"]
    assert (humaneval["base"]["expert"], humaneval["trained"]["expert"]) == ("smol-arena", "smol-arena-t2")
    roster = {row["expert"] for row in second["ratings"]["leaderboard"]}
    assert roster == {"beta", "gamma", "alpha-f16", "smol-arena", "smol-arena-t2"}
    assert report["ratings"] == second["ratings"]  # the top level is the last turn's
    # A rerun finds every turn recorded: no task, no stack.
    fakes["app"].sent.clear()
    stack.calls.clear()
    again, said = _run(path)
    assert fakes["app"].sent == [] and stack.calls == []
    assert sum("already done" in line for line in said) == 14
    assert again["turns"][1]["evaluation"] == second["evaluation"]


def test_on_a_cluster_nothing_is_started_and_the_models_join_by_chart_values(
    fakes: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoStack(_Stack):
        def up(self, *a: Any, **k: Any) -> dict[str, Any]:
            raise AssertionError("started a local stack on a cluster")

        def add(self, *a: Any, **k: Any) -> list[Any]:
            raise AssertionError("added to a local stack on a cluster")

    fakes["stacks"].append(NoStack(running=True))
    values_seen: list[dict[str, Any]] = []

    def serves(self: FlywheelRun, expert: str, revision: str) -> bool:
        values_seen.append(yaml.safe_load((self.work / "chart-values.yaml").read_text()))
        return True

    monkeypatch.setattr(FlywheelRun, "_serves", serves)
    # Without a trainer's worker on the cluster, the flywheel says so before sending anything to it.
    fakes["app"].consumed = ["mine", "battle"]
    with pytest.raises(flywheel_module.FlywheelError, match="services.trainer.enabled"):
        _run(_write(tmp_path, flywheel="fw-no-trainer"), stack="cluster")
    assert fakes["app"].sent == []
    fakes["app"].consumed = ["mine", "battle", "train"]
    report, _ = _run(_write(tmp_path, target={"name": "smol-arena", "base_expert": "alpha",
                                              "base_model": "/models/hf/base"}), stack="cluster")  # fmt: skip
    # The trainer's own path to the base model, not one of this machine.
    assert fakes["app"].sent[0][1][0]["base_model"] == "/models/hf/base"
    entries = {e["name"]: e for e in values_seen[-1]["extraExperts"]}
    assert set(entries) == {"alpha-f16", "smol-arena"}
    trained = entries["smol-arena"]
    assert trained["engine"] == "llamacpp"
    assert trained["model"] == {
        "objectStore": {"prefix": "exports/smol-arena/r-1/gguf/"},
        "path": "smol-arena-f16.gguf",
    }
    assert trained["podAnnotations"] == {"warrior.dev/revision": "rev-smol-arena"}
    assert report["registered"][1]["key"] == "exports/smol-arena/r-1/gguf/"
    # The follow-up roster names the models without local files: the chart serves them.
    assert all(e.model is None for e in fakes["campaigns"].started["fw-arena-followup"].experts if "-" in e.name)


@pytest.mark.stack
def test_what_is_added_to_a_running_stack_joins_it(make_stack: Any) -> None:
    """The real local stack: `add` starts only what is missing, records it, and `down` stops it with the rest."""
    from warrior.common.campaign_config import ExpertConfig

    stack = make_stack(
        {"campaign": "fw-add", "experts": [{"name": n, "engine": "zero-latency-test"} for n in ("alpha", "beta")]}
    )
    added = stack.local.add(
        [ExpertConfig(name=n, engine="zero-latency-test") for n in ("alpha", "delta")],
        services=("judge", "trainer"),
        echo=lambda *_: None,
    )
    assert sorted(p.name for p in added) == ["expert-delta", "worker-trainer"]
    assert "delta" in stack.rt.registry.experts()
    names = [p.name for p in stack.local.running()]
    assert names.count("expert-alpha") == 1 and names.count("worker-judge") == 1
    assert {"expert-delta", "worker-trainer"} <= set(names)
    stopped = stack.local.down(echo=lambda *_: None)
    assert {"expert-delta", "worker-trainer"} <= set(stopped)


def test_ablations_train_the_target_on_the_same_rows_with_other_winners(fakes: dict[str, Any], tmp_path: Path) -> None:
    from warrior.cli.flywheel import render_report
    from warrior.common.campaign_config import ConfigError

    # The LLM-only ablation needs the judges' verdicts on the pairs execution decides.
    with pytest.raises(ConfigError, match="llm-only needs .*battle.shadow_judging true"):
        load_flywheel(_write(tmp_path, ablations=["llm-only"]))
    with pytest.raises(ConfigError, match="ablations must be distinct"):
        load_flywheel(_write(tmp_path, ablations=["random", "random"]))
    stack = _Stack(running=False)
    fakes["stacks"].append(stack)
    path = _write(
        tmp_path, {"battle": {"shadow_judging": True}}, ablations=["llm-only", "random"], train={"method": "full"}
    )
    report, _ = _run(path)
    campaigns = fakes["campaigns"]
    # The LLM-only winners come from the same campaign's battles, re-decided by the judges alone.
    assert ("fw-arena", "llm") in campaigns.finalized
    main = campaigns.built[0]
    built = {b["name"]: b for b in campaigns.built}
    llm_only, random_ = built["fw-arena-llm-only"], built["fw-arena-random"]
    assert llm_only["ratings_key"] == "runs/fw-arena/ratings/llm.json" and llm_only["winners"] == "ratings"
    assert random_["winners"] == "random" and random_["ratings_key"] == main["ratings_key"]
    assert llm_only["instructions"] == random_["instructions"] == ["i0", "i1", "i2"]  # the arena's rows
    # Each ablation trains the same base model (not the arena-trained one) and is served and evaluated.
    trains = {args[0]["output"]: args[0] for name, args, _ in fakes["app"].sent if name == queues.TASK_TRAIN}
    assert set(trains) == {"smol-arena", "smol-arena-llm-only", "smol-arena-random"}
    assert {t["base_model"] for t in trains.values()} == {str(tmp_path / "base-model")}
    assert trains["smol-arena-random"]["dataset"]["name"] == "fw-arena-random"
    evaluated = [args[0] for name, args, _ in fakes["app"].sent if name == queues.TASK_EVALUATE]
    assert evaluated == ["alpha-f16", "smol-arena", "smol-arena-llm-only", "smol-arena-random"]
    added = [name for call in stack.calls if call[0] == "add" for name in call[1]]
    assert {"smol-arena-llm-only", "smol-arena-random"} <= set(added)
    ablation = report["ablations"]["random"]
    assert ablation["dataset"]["winners"] == {"beta": 3} and ablation["dataset"]["same_winner_as_arena"] == 0
    paired = ablation["paired"]["trained_minus_ablation"]["benchmarks"]["humaneval"]
    assert paired["problems"] == 2 and paired["difference"] == 0.0
    # The data the target trained on: its rows, their winners, and the final rows' decontamination.
    assert report["data"]["rows"] == 3 and report["data"]["winners"] == {"alpha": 3}
    assert fakes["audited"][0] == ["i0", "i1", "i2"]
    text = render_report(report)
    assert "ablations: the same rows, other winners" in text and "trained - llm-only" in text
    assert "each ablation vs the base" in text and "random - base" in text
    assert "overlap of the final rows with humaneval: 0 rows" in text
    # Resumed, every ablation step is found recorded.
    fakes["app"].sent.clear()
    again, said = _run(path)
    assert fakes["app"].sent == []
    assert sum("[ablation-" in line and "already done" in line for line in said) == 8
    assert again["ablations"] == report["ablations"]


def test_the_shipped_recipes_render() -> None:
    root = Path(__file__).resolve().parent.parent
    cpu = load_flywheel(root / "configs" / "flywheel-cpu.yaml", local_model=False)
    assert cpu.config.ablations == ["llm-only", "random"] and cpu.config.evaluate.limit is None
    assert cpu.campaign.battle.shadow_judging and cpu.campaign.dataset.require_verified
    assert set(cpu.config.evaluate.benchmarks) == {"humaneval", "mbpp"}
    assert load_flywheel(root / "configs" / "flywheel-demo.yaml", local_model=False).config.ablations == []
