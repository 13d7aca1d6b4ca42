"""What the quantize and grade stages and the dataset loader are given: frozen values, built in
one place from the validated config (bitbudget.study) or from a job's params (workflow/scripts),
beside the generation's :class:`bitbudget.enginespec.EngineSpec` (which declares its fields'
roles with the helpers here).

Every field declares its role (:func:`key_field` / :func:`runtime_field`): ``key`` (hashed
into the artifact's id; the key is computed from these fields) or ``runtime`` (where and how fast
a job runs, or a value an id in the key already fixes). A runtime field names the config fields
it is read from; bitbudget.study.RUNTIME_FIELDS is made of them.

Defaults come from the config schema (bitbudget.schema): a section given without them, e.g. by a
test or a benchmark, is completed from there, as config validation completes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable

from bitbudget import versions
from bitbudget.artifacts import sha256_file
from bitbudget.schema import schema_defaults

#: the metadata entry of a dataclass field that says what it is
ROLE = "role"
#: a field hashed into the artifact's id
KEY = "key"
#: a field that changes where and how fast a job runs, never its result (or that an id in the key fixes)
RUNTIME = "runtime"
#: the metadata entry of a runtime field that names the config fields it is read from
CONFIG = "config"


def key_field(**options):
    """A key field; ``options``: those of :func:`dataclasses.field` (a default)."""
    return field(metadata={ROLE: KEY}, **options)


def runtime_field(*config: str):
    """A runtime field; ``config``: the config fields it is read from ("*": each named entry),
    which are then never in a key (bitbudget.study.RUNTIME_FIELDS)."""
    return field(metadata={ROLE: RUNTIME, CONFIG: config})


def fields_with_role(cls, role: str) -> tuple[str, ...]:
    """Names of the fields of dataclass ``cls`` declared with ``role`` (KEY or RUNTIME)."""
    return tuple(f.name for f in fields(cls) if f.metadata[ROLE] == role)


def runtime_config_fields(cls) -> tuple[str, ...]:
    """The config fields the runtime fields of dataclass ``cls`` are read from."""
    return tuple(path for f in fields(cls) if f.metadata[ROLE] == RUNTIME for path in f.metadata[CONFIG])


# --------------------------------------------------------------------------- runtime settings
@dataclass(frozen=True)
class CheckpointRuntime:
    """How a checkpoint is made, never what: never in its id."""

    # the llm-compressor interpreter of a gptq / scheme format; None: this one
    python: str | None = runtime_field("envs.llmcompressor.python")

    @classmethod
    def from_config(cls, config: dict, quantized: bool) -> "CheckpointRuntime":
        """From a validated config (`envs.llmcompressor.python` has no default: absent is this
        interpreter); a checkpoint that is not quantized runs no quantizer."""
        return cls(config["envs"]["llmcompressor"].get("python") if quantized else None)


@dataclass(frozen=True)
class GradeRuntime:
    """How fast a grade is made, never what: never in its id."""

    workers: int = runtime_field("grading.workers")  # grading processes

    @classmethod
    def from_config(cls, config: dict) -> "GradeRuntime":
        return cls(config["grading"]["workers"])


# --------------------------------------------------------------------------- quantize
@dataclass(frozen=True)
class WeightFormat:
    """A quantized weight format as it enters a checkpoint's key and the quantizer: all key."""

    bits: int = key_field()
    method: str = key_field()  # rtn or gptq
    group_size: int = key_field()
    scheme: str | None = key_field()  # compressed-tensors scheme (llm-compressor); None: this project's RTN
    dampening_frac: float | None = key_field()  # GPTQ; None: llm-compressor's default
    # the calibration set a GPTQ format reads; None: the schema's default, or a format that reads none
    calibration: dict | None = key_field()

    @classmethod
    def from_config(cls, fmt: dict) -> "WeightFormat":
        """From a `weight_formats` entry (the schema's defaults filled where it leaves them out).
        A calibration set enters only where it is read and is not the default one (the id such a
        format always had)."""
        fmt = {**schema_defaults("weight_formats", "*"), **fmt}
        calibration = fmt.get("calibration")
        if not needs_calibration(fmt["method"]) or calibration == schema_defaults("weight_formats", "*", "calibration"):
            calibration = None
        return cls(fmt["bits"], fmt["method"], fmt["group_size"], fmt.get("scheme"), fmt.get("dampening_frac"),
                   calibration)

    @property
    def calibration_set(self) -> dict:
        """The set a GPTQ quantizer calibrates on: the schema's default completed by this format's."""
        return {**schema_defaults("weight_formats", "*", "calibration"), **(self.calibration or {})}

    @property
    def uses_llmcompressor(self) -> bool:
        return self.method == "gptq" or self.scheme is not None

    def key(self) -> dict:
        """What the checkpoint's key holds: an unset optional field is left out."""
        key = {"bits": self.bits, "method": self.method, "group_size": self.group_size}
        key.update({name: value for name, value in (("scheme", self.scheme), ("dampening_frac", self.dampening_frac),
                                                    ("calibration", self.calibration)) if value is not None})
        return key

    @classmethod
    def from_key(cls, key: dict) -> "WeightFormat":
        """The inverse of :meth:`key` (a quantize job's params, a spec file)."""
        return cls(key["bits"], key["method"], key["group_size"], key.get("scheme"), key.get("dampening_frac"),
                   key.get("calibration"))


def needs_calibration(method: str) -> bool:
    return method == "gptq"  # RTN: weight scales need no data; W8A8 activations are dynamic


@dataclass(frozen=True)
class QuantizeSpec:
    """One checkpoint as the quantize stage makes it: from which model, into which format, by
    which quantizer (key), in which interpreter (runtime). A checkpoint at 16 bits has no format
    and is the source itself."""

    model: dict = key_field()  # the model's key: path and revision, its recipe or its files' fingerprint
    # the simulated engine's checkpoint: the architecture it is made of, no weights; None: a real one
    metadata_only: dict | None = key_field()
    format: WeightFormat | None = key_field()  # None: not quantized
    quantizer: str | None = key_field()  # the quantizer's version (bitbudget.versions)
    runtime: CheckpointRuntime = runtime_field()

    @property
    def source(self) -> str:
        """Where the weights are read from: a directory or a hub id."""
        return self.model["path"]

    @property
    def revision(self) -> str | None:
        """The pinned revision of a hub source (its key holds it)."""
        return self.model["revision"]

    @property
    def quantized(self) -> bool:
        return self.format is not None

    def key(self) -> dict:
        """What the checkpoint's id hashes (the order is the one its quantize job's params always had)."""
        key = {"model": self.model}
        if self.metadata_only is not None:
            key["metadata_only"] = self.metadata_only
        if self.format is not None:
            key["format"] = self.format.key()
        if self.quantizer is not None:
            key["quantizer"] = self.quantizer
        return key

    @classmethod
    def from_key(cls, key: dict, runtime: CheckpointRuntime) -> "QuantizeSpec":
        """From a checkpoint's key (bitbudget.study.Checkpoint.key, a quantize job's params)."""
        fmt = WeightFormat.from_key(key["format"]) if "format" in key else None
        return cls(key["model"], key.get("metadata_only"), fmt, key.get("quantizer"), runtime)

    def to_dict(self) -> dict:
        """Plain JSON values: the key and the runtime settings."""
        return {"key": self.key(), "runtime": {"python": self.runtime.python}}

    @classmethod
    def from_dict(cls, spec: dict) -> "QuantizeSpec":
        return cls.from_key(spec["key"], CheckpointRuntime(**spec["runtime"]))


# --------------------------------------------------------------------------- grade
@dataclass(frozen=True)
class GradeSpec:
    """One grade as the grade stage makes it: which generation, by which grader (key), with how
    many workers (runtime). The dataset kind and the end of thinking are the generation's (its
    id, in the key, fixes them)."""

    generation: str = key_field()  # the generation's id
    grader: str = key_field()  # bitbudget.versions.GRADER_VERSION
    math_verify: str | None = key_field()  # the installed math-verify's version
    timeout_s: float = key_field()  # math-verify's timeout per answer
    # the two below are fixed by the generation (its id is in the key): never hashed again
    kind: str = runtime_field()  # integer or choice: the generation's dataset's
    end_of_thinking: str = runtime_field()  # the generation's forcing: what closes the thinking
    runtime: GradeRuntime = runtime_field()

    @classmethod
    def from_key(cls, key: dict, kind: str, end_of_thinking: str, runtime: GradeRuntime) -> "GradeSpec":
        """From a grade's key (bitbudget.study.Grade.key, a grade job's params)."""
        return cls(key["generation"], key["grader"], key["math_verify"], key["timeout_s"], kind, end_of_thinking,
                   runtime)

    def key(self) -> dict:
        """What the grade's id hashes."""
        return {"generation": self.generation, "grader": self.grader, "math_verify": self.math_verify,
                "timeout_s": self.timeout_s}

    def to_dict(self) -> dict:
        return {"key": self.key(), "kind": self.kind, "end_of_thinking": self.end_of_thinking,
                "runtime": {"workers": self.runtime.workers}}

    @classmethod
    def from_dict(cls, spec: dict) -> "GradeSpec":
        return cls.from_key(spec["key"], spec["kind"], spec["end_of_thinking"], GradeRuntime(**spec["runtime"]))


# --------------------------------------------------------------------------- datasets
#: dataset fields its loader reads only for a source read record by record, or a choice kind
RECORD_FIELDS = ("fields", "shuffle_seed", "problem_template")
CHOICE_FIELDS = ("shuffle_seed", "problem_template")


@dataclass(frozen=True)
class DatasetSpec:
    """A question set as its loader (bitbudget.datasets.load_questions) reads it: every field of
    the validated `datasets` entry, all key; its name is a label."""

    kind: str = key_field()  # integer or choice
    source: str = key_field()  # synthetic, hub or file
    synthetic: dict | None = key_field()  # source synthetic: n_questions, seed, min/max difficulty
    hub: dict | None = key_field()  # source hub: one split of a `datasets` dataset
    file: str | None = key_field()  # source file: a parquet or JSONL file
    fields: dict = key_field()  # column names of the source records
    shuffle_seed: int = key_field()  # seed of a choice question's option order
    problem_template: str = key_field()  # layout of a multiple-choice problem
    expected_questions: int | None = key_field()  # questions the source holds; None: unchecked
    max_questions: int | None = key_field()  # the first questions only; None: all
    name: str | None = runtime_field()  # the config's name for it (error messages); None: read from a key

    @classmethod
    def from_config(cls, dataset: dict, name: str | None = None) -> "DatasetSpec":
        """From a `datasets` entry: validated, or given directly (e.g. by a test or a benchmark),
        completed with the schema's defaults as validation completes it; also from a trace key's
        `dataset` section (which leaves out the fields its loader does not read)."""
        dataset = with_defaults(dataset)
        return cls(dataset["kind"], dataset["source"], dataset.get("synthetic"), dataset.get("hub"),
                   dataset.get("file"), dataset["fields"], dataset["shuffle_seed"], dataset["problem_template"],
                   dataset.get("expected_questions"), dataset["max_questions"], name)

    @property
    def read_fields(self) -> tuple[str, ...]:
        """The key fields its loader reads: a synthetic source reads no records, and only a choice
        kind shuffles options into a template."""
        unread = set(RECORD_FIELDS if self.source == "synthetic" else ())
        unread |= set(CHOICE_FIELDS if self.kind != "choice" else ())
        return tuple(name for name in KEY_FIELDS_OF_DATASET if name not in unread)

    def key(self, given: Iterable[str] | None = None) -> dict:
        """What the questions are made of, as a trace key holds it: the fields its loader reads,
        the loader's version, the file's content (where the file is there) and the synthetic task's
        version. ``given``: the fields of the config entry it was built from, in their order (a
        field it leaves out, or gives as null, is in the key as given, so the key, and a generate
        job's params, stay as they always were); default: the read fields that are set."""
        read = self.read_fields
        if given is None:
            names = [name for name in read if getattr(self, name) is not None]
        else:
            names = [name for name in given if name in read]
        key = {name: getattr(self, name) for name in names}
        key["loader"] = versions.DATASET_LOADER_VERSION
        if self.source == "file" and Path(self.file).is_file():
            key["file_sha256"] = sha256_file(self.file)
        if self.source == "synthetic":
            key["task_version"] = versions.SYNTHETIC_TASK_VERSION
        return key


KEY_FIELDS_OF_DATASET = fields_with_role(DatasetSpec, KEY)


def with_defaults(dataset: dict) -> dict:
    """The dataset entry with the schema's defaults filled in, as config validation fills them."""
    filled = _filled(dataset, schema_defaults("datasets", "*"))
    return {**filled, "fields": _filled(filled["fields"], schema_defaults("datasets", "*", "fields"))}


def _filled(given: dict, defaults: dict) -> dict:
    """``given`` with the defaults it leaves out added after its own fields (their order kept)."""
    return {**given, **{name: value for name, value in defaults.items() if name not in given}}
