"""What an engine is given for one generation: frozen values, built in one place from the
validated config (bitbudget.study.Generation.engine_spec, or from a generate job's params).

Every field of :class:`EngineSpec` and :class:`EngineRuntime` declares its role
(bitbudget.specs.key_field / runtime_field): ``key`` (hashed into the generation's id, see
:meth:`EngineSpec.generation_key`) or ``runtime`` (where and how fast it runs, never which tokens
come). The trace key stays the dict the trace id hashes; the
engine settings it holds are read through :class:`EngineSettings`.

The JSON form (:meth:`EngineSpec.to_dict`, :meth:`EngineSpec.from_dict`) carries a spec to an
engine's own interpreter (bitbudget.interpreter); ``from_dict`` also reads the flat dict specs
written before these objects existed.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitbudget.artifacts import content_id
from bitbudget.specs import RUNTIME, DatasetSpec, fields_with_role, key_field, runtime_field


@dataclass(frozen=True)
class EngineRuntime:
    """The engine settings that change how fast tokens come, never which: never in an id."""

    batch_size: int = runtime_field()  # rows decoded together (vLLM: max_num_seqs)
    python: str | None = runtime_field()  # interpreter of the engine's environment; None: this one
    device: str = runtime_field()  # torch device of the HF engine
    cpu_kv_cache_gb: int = runtime_field()  # GiB vLLM's CPU backend reserves for the KV cache

    @classmethod
    def from_config(cls, engine: dict) -> "EngineRuntime":
        """From a validated `engine` section (its defaults filled; `python` has none: absent is
        this interpreter)."""
        return cls(engine["batch_size"], engine.get("python"), engine["device"], engine["cpu_kv_cache_gb"])

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in ENGINE_RUNTIME_FIELDS}


#: the engine's runtime settings, the config fields `engine.*` that are never in a key
ENGINE_RUNTIME_FIELDS = fields_with_role(EngineRuntime, RUNTIME)


@dataclass(frozen=True)
class GenerationRuntime:
    """Where and how fast a generation runs, never which tokens come: never in its id."""

    engine: EngineRuntime = runtime_field(*(f"{section}.{name}" for section in ("engine", "grids.*.engine")
                                            for name in ENGINE_RUNTIME_FIELDS))
    # scheduler resources of its generate job: `resources.generate`, overridden per model
    resources: dict = runtime_field("resources", "models.*.resources")


@dataclass(frozen=True)
class EngineSettings:
    """The engine settings a trace key holds (its `engine` section, less the package versions
    bitbudget.versions.engine_identity adds): all key, they choose the tokens."""

    name: str = key_field()  # hf, vllm or simulated
    dtype: str = key_field()
    kv_cache_dtype: str = key_field()  # vLLM: auto or fp8
    enforce_eager: bool = key_field()  # vLLM without graph compilation
    # the fields below have no schema default: None leaves the choice to vLLM
    gpu_memory_utilization: float | None = key_field()
    max_model_len: int | None = key_field()  # None: longest prompt + horizon + answer
    block_size: int | None = key_field()

    @classmethod
    def from_key(cls, engine: dict) -> "EngineSettings":
        """From a trace key's `engine` section (built from a validated config)."""
        return cls(engine["name"], engine["dtype"], engine["kv_cache_dtype"], engine["enforce_eager"],
                   engine.get("gpu_memory_utilization"), engine.get("max_model_len"), engine.get("block_size"))


def generation_key(trace_id: str, budgets, samples: int, maximum: int, closed_questions=None) -> dict:
    """What a generation's id hashes: its trace and the budgets it reads, and only where they differ
    from the full design's, its samples per question and its questions closed at fewer samples (so
    the full design's id, and every round's without closed questions, stays as it was)."""
    key = {"trace": trace_id, "budgets": list(budgets)}
    if samples < maximum:
        key["samples"] = samples
    if closed_questions:
        key["closed_questions"] = dict(sorted(closed_questions.items()))
    return key


@dataclass(frozen=True)
class EngineSpec:
    """One generation as its engine runs it: which trace, read at which budgets and samples per
    question (key), from which checkpoint into which store, at which speed settings (runtime)."""

    trace_key: dict = key_field()  # what the trace id hashes: checkpoint, KV, dataset, sampling, engine, ...
    budgets: tuple[int, ...] = key_field()  # token budgets, ascending
    samples: int = key_field()  # samples per question read: a round's, or the full design's
    runtime: EngineRuntime = runtime_field()
    checkpoint_path: str = runtime_field()  # where the weights are (the key holds the checkpoint's id)
    trace_dir: str = runtime_field()  # the trace store, named by the trace id
    # the source revision an unquantized checkpoint is loaded at (the checkpoint's key pins it)
    revision: str | None = runtime_field()
    # questions read at fewer samples than `samples` (closed before this round): question id -> samples
    closed_questions: dict[str, int] = key_field(default_factory=dict)

    def __post_init__(self):
        if not self.budgets or list(self.budgets) != sorted(set(self.budgets)):
            raise ValueError(f"budgets must be distinct and ascending, got {self.budgets}")
        wrong = {q: n for q, n in self.closed_questions.items() if not 1 <= n < self.samples}
        if wrong:
            raise ValueError(f"closed_questions must hold between 1 and {self.samples - 1} samples "
                             f"(fewer than the round's), got {wrong}")

    def samples_of(self, question_id: str) -> int:
        """Samples per question read of ``question_id``: fewer than `samples` where it was closed."""
        return self.closed_questions.get(question_id, self.samples)

    @classmethod
    def from_generation_key(cls, key: dict, runtime: EngineRuntime, checkpoint_path: str, trace_dir: str,
                            revision: str | None) -> "EngineSpec":
        """From a generation's key (bitbudget.study.Generation.key, a generate job's params):
        `samples` is in it only for a round that reads fewer than the full design's."""
        trace_key = key["trace_key"]
        samples = key["samples"] if "samples" in key else trace_key["sampling"]["samples_per_question"]
        return cls(trace_key, tuple(key["budgets"]), samples, runtime, checkpoint_path, trace_dir, revision,
                   dict(key.get("closed_questions", {})))

    @property
    def maximum(self) -> int:
        """Samples per question of the full design: the trace holds samples 0..maximum-1."""
        return self.trace_key["sampling"]["samples_per_question"]

    @property
    def trace_id(self) -> str:
        return content_id(self.trace_key)

    def generation_key(self) -> dict:
        """What the generation's id hashes (bitbudget.study.Generation.with_samples)."""
        return generation_key(self.trace_id, self.budgets, self.samples, self.maximum, self.closed_questions)

    @property
    def engine(self) -> EngineSettings:
        return EngineSettings.from_key(self.trace_key["engine"])

    @property
    def dataset(self) -> DatasetSpec:
        """The dataset the questions are loaded from (bitbudget.datasets), as the trace key holds it."""
        return DatasetSpec.from_config(self.trace_key["dataset"])

    @property
    def kv_strategy(self) -> dict:
        return self.trace_key["kv"]

    def to_dict(self) -> dict:
        """Plain JSON values: the spec file of a stage re-executed in another interpreter."""
        return {"trace_key": self.trace_key, "budgets": list(self.budgets), "samples": self.samples,
                "runtime": self.runtime.to_dict(), "checkpoint_path": self.checkpoint_path,
                "trace_dir": self.trace_dir, "revision": self.revision, "closed_questions": self.closed_questions}

    @classmethod
    def from_dict(cls, spec: dict) -> "EngineSpec":
        """The inverse of :meth:`to_dict`; also reads the flat dict of the specs written before,
        whose `engine` held the trace key's engine section and the runtime settings."""
        runtime = (EngineRuntime(**spec["runtime"]) if "runtime" in spec
                   else EngineRuntime.from_config(spec["engine"]))
        return cls(spec["trace_key"], tuple(spec["budgets"]), spec["samples"], runtime,
                   spec["checkpoint_path"], spec["trace_dir"], spec["revision"], spec.get("closed_questions", {}))
