"""The simulated engine: no model, answers drawn from a planted accuracy surface.

It rehearses the whole pipeline (scheduling, grading, aggregation, fitting, the report) at the
paper's scale on a CPU, and checks that the analysis recovers a truth it was given. It writes
the same per-question shards and ``samples.parquet`` columns as the real engines.

The model (config section ``simulation``; every coefficient is a config value)
-----------------------------------------------------------------------------
For a checkpoint with effective size ``W`` (GiB, placed by the simulator's own arithmetic from
the model's parameter counts in ``simulation.parameters``, never by the analysis's memory model:
non-embedding parameters at the format's bits plus a 16-bit scale and zero point per group, the
rest at 16 bits), a dataset ``d``, a KV strategy and a token budget ``T``, the probability that a
sample of model ``m`` answers question ``q`` correctly is

    p = expit(level_d + weight_term + token_term - kv_loss - difficulty_q - interaction_qm)

* ``x = ln(W / switch_gib)``, ``s = expit(sharpness * x)`` (0 well below the switch, 1 above);
* the effective size is ``W`` (parameters x bits): ``weight_term = weight_slope_below *
  min(x, 0) + weight_slope_above * max(x, 0) + weight_bits_offset_d[bits]``; the offset says
  how a format departs from its memory (negative: quantization costs more than the memory it
  saves, as 4-bit weights on AIME; positive: parameters count more than bits, as on GPQA);
* ``token_term = ((1 - s) * token_slope_below + s * token_slope_above) * ln(T / reference_tokens)``;
* KV (``s_kv`` as ``s`` around ``kv.switch_gib``): a quantized cache loses
  ``(1 - s_kv) * quantization_loss_below[bits] + s_kv * quantization_loss_above[bits]``; an
  evicting cache loses ``eviction_loss * method_factor * ln(max(T, B) / B)`` for KV budget
  ``B`` (nothing until it evicts), ``eviction_loss`` moving from ``_below`` to ``_above``;
* ``difficulty_q ~ Normal(0, difficulty_sd_d)``, fixed per question by ``simulation.seed``;
  ``interaction_qm ~ Normal(0, interaction_sd_d)``, fixed per question and model: a question hard
  for one model can be easy for another (every format of a model shares it).

Samples are nested like real trajectories: sample ``i`` of question ``q`` has one uniform
``u`` (its latent "solve time": the smallest budget whose ``p`` exceeds ``u``), so a sample
correct at budget T stays correct at larger budgets whenever ``p`` grows with T (it does for
every strategy but eviction, whose longer generations lose context). On top of that a sample
slips (answers wrong at one budget) with ``slip_probability``. A wrong sample answers its own
wrong value, the same at every budget: the question's distractor with probability
``distractor_share`` (``_below`` -> ``_above`` across the switch: systematic errors of small
models defeat majority votes), else one of the question's other plausible values. maj@G then
follows from independent samples, as with a real model.

Every draw is a hash of (seeds, checkpoint, KV strategy, dataset, question, sample index,
budget), so reruns, resumed jobs and extended sample pools reproduce earlier samples exactly.
Every sample thinks to each budget and is forced to answer there (the paper's protocol with
"Wait" extension): ``thinking_tokens`` is the budget, the text a one-line stand-in for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from bitbudget import memory
from bitbudget.artifacts import atomic_directory, content_id
from bitbudget.backends import TraceEngine
from bitbudget.enginespec import EngineSpec
from bitbudget.specs import WeightFormat
from bitbudget.shards import first_samples, missing_forks, new_samples, prompt_text, write_new_samples, write_shard

log = logging.getLogger(__name__)

_UNIFORM_BITS = 52
LETTERS = "ABCD"
QUANTIZATION_FILE = "quantization.json"
CONFIG_FILE = "config.json"


class SimulationError(ValueError):
    """The simulated engine cannot read what it needs (an architecture, a surface)."""


class Interrupted(RuntimeError):
    """Generation was asked to stop (SIGTERM); finished shards are kept."""


def uniform(*parts) -> float:
    """A uniform number in [0, 1) fixed by ``parts`` (hash-based: no generator state)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> (64 - _UNIFORM_BITS)) / 2.0**_UNIFORM_BITS


def normal(*parts) -> float:
    """A standard normal number fixed by ``parts`` (Box-Muller on two hashed uniforms)."""
    u1 = max(uniform(*parts, "n1"), 2.0**-_UNIFORM_BITS)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * uniform(*parts, "n2"))


def expit(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


# --------------------------------------------------------------------------- the checkpoint


def read_architecture(path: str | Path) -> dict:
    """The architecture of a model path: an architecture JSON or a directory with config.json."""
    path = Path(path)
    file = path / CONFIG_FILE if path.is_dir() else path
    if not file.is_file():
        raise SimulationError(
            f"the simulated engine needs the architecture of '{path}' (no weights are read); fix: set the "
            f"model's `path` to an architecture JSON such as resources/architectures/qwen3-8b.json, or to a "
            f"directory holding its {CONFIG_FILE}"
        )
    return memory.load_architecture(file)


GIB = 2**30
SCALE_AND_ZERO_BITS = 32  # one 16-bit scale and one 16-bit zero point per quantization group


def effective_gib(parameters: dict, bits: int, group_size: int | None) -> float:
    """The simulator's placement of a checkpoint (GiB): non-embedding parameters at ``bits``
    plus a scale and zero point per group, the remaining parameters at 16 bits."""
    if bits >= 16:
        return parameters["total"] * 2 / GIB
    quantized_bits = bits + SCALE_AND_ZERO_BITS / group_size
    kept = parameters["total"] - parameters["non_embedding"]
    return (parameters["non_embedding"] * quantized_bits / 8 + kept * 2) / GIB


def checkpoint_format(path: str | Path) -> tuple[int, int | None]:
    """(bits, group size) of a metadata-only checkpoint; (16, None) for an unquantized model path."""
    quant = Path(path) / QUANTIZATION_FILE
    if not quant.is_file():
        return 16, None
    meta = json.loads(quant.read_text())
    return int(meta["bits"]), meta["group_size"]


@dataclass(frozen=True)
class SimulatedCheckpoint:
    """What the surface reads of a checkpoint: its effective size and bits."""

    weight_gib: float
    bits: int

    @classmethod
    def load(cls, path: str | Path, parameters: dict) -> "SimulatedCheckpoint":
        """A metadata-only checkpoint directory (quantization.json) or an unquantized model path,
        placed by :func:`effective_gib` from the model's ``parameters``."""
        return cls.from_format(parameters, *checkpoint_format(path))

    @classmethod
    def from_format(cls, parameters: dict, bits: int, group_size: int | None) -> "SimulatedCheckpoint":
        return cls(effective_gib(parameters, bits, group_size), int(bits))


def write_metadata_checkpoint(source: str | Path, out_dir: str | Path, fmt: WeightFormat) -> dict:
    """A checkpoint without weights: the architecture (config.json) and quantization.json with
    the parameter counts the memory model reads, and the bits and group size the surface reads
    (the surface places the checkpoint from simulation.parameters, not these counts)."""
    architecture = read_architecture(source)
    counts = memory.param_counts(architecture)
    meta = {
        "bits": fmt.bits,
        "group_size": fmt.group_size,
        "method": fmt.method,
        "metadata_only": True,
        "n_quantized_params": counts["quantized"],
        "n_unquantized_params": counts["unquantized"],
        "source": str(source),
    }
    with atomic_directory(out_dir) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(architecture, indent=2) + "\n")
        (tmp / QUANTIZATION_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# --------------------------------------------------------------------------- the surface


def _between(below: float, above: float, s: float) -> float:
    return (1.0 - s) * below + s * above


@dataclass(frozen=True)
class Surface:
    """The planted probability of a correct answer for one (checkpoint, KV strategy, dataset)."""

    simulation: dict  # the generation's `simulation` key: globals, `kv`, and `surface` of its dataset
    checkpoint: SimulatedCheckpoint
    kv_strategy: dict

    def _switch(self, switch_gib: float) -> float:
        return expit(self.simulation["sharpness"] * math.log(self.checkpoint.weight_gib / switch_gib))

    @property
    def scale(self) -> float:
        """s: 0 well below the weights/tokens switch, 1 well above."""
        return self._switch(self.simulation["switch_gib"])

    def logit(self, budget: int) -> float:
        """Logit of a median question (difficulty 0) at token budget ``budget``."""
        sim, surface = self.simulation, self.simulation["surface"]
        s = self.scale
        x = math.log(self.checkpoint.weight_gib / sim["switch_gib"])
        weights = (surface["weight_slope_below"] * min(x, 0.0) + surface["weight_slope_above"] * max(x, 0.0)
                   + surface["weight_bits_offset"][f"{self.checkpoint.bits}bit"])
        tokens = _between(surface["token_slope_below"], surface["token_slope_above"], s) * math.log(
            budget / sim["reference_tokens"])
        return surface["level"] + weights + tokens - self.kv_loss(budget)

    def kv_loss(self, budget: int) -> float:
        kv, method = self.simulation["kv"], self.kv_strategy["method"]
        s_kv = self._switch(kv["switch_gib"])
        if method == "quantized":
            bits = f"{self.kv_strategy['bits']}bit"
            return _between(kv["quantization_loss_below"][bits], kv["quantization_loss_above"][bits], s_kv)
        if method in ("streaming_llm", "r_kv"):
            kept = self.kv_strategy["budget"]
            per_log = _between(kv["eviction_loss_below"], kv["eviction_loss_above"], s_kv)
            return per_log * kv["eviction_method_factor"][method] * math.log(max(budget, kept) / kept)
        return 0.0

    def probability(self, budget: int, difficulty: float) -> float:
        return expit(self.logit(budget) - difficulty)

    @property
    def distractor_share(self) -> float:
        surface = self.simulation["surface"]
        return _between(surface["distractor_share_below"], surface["distractor_share_above"], self.scale)


# --------------------------------------------------------------------------- questions and answers


@dataclass(frozen=True)
class PlantedQuestion:
    question_id: str
    gold: str
    difficulty: float
    distractor: str
    alternatives: tuple[str, ...] = field(default=())


def plant_question(question: dict, kind: str, simulation: dict) -> PlantedQuestion:
    """The question's difficulty for the generation's model and its plausible wrong answers, fixed
    by simulation.seed."""
    seed, dataset, qid = simulation["seed"], simulation["dataset"], question["question_id"]
    surface = simulation["surface"]
    difficulty = (surface["difficulty_sd"] * normal(seed, dataset, qid, "difficulty")
                  + surface["interaction_sd"] * normal(seed, dataset, qid, simulation["model"], "interaction"))
    gold = str(question["answer"])
    if kind == "choice":
        wrong = [letter for letter in LETTERS[: len(question.get("choices") or LETTERS)] if letter != gold]
    else:
        low, high = surface["answer_range"]
        wrong, draw = [], 0
        while len(wrong) < min(surface["wrong_alternatives"] + 1, high - low):  # distractor + alternatives
            value = str(low + int(uniform(seed, dataset, qid, "wrong", draw) * (high - low + 1)))
            draw += 1
            if value != gold and value not in wrong:
                wrong.append(value)
    distractor = wrong[int(uniform(seed, dataset, qid, "distractor") * len(wrong))]
    others = tuple(value for value in wrong if value != distractor)
    return PlantedQuestion(qid, gold, difficulty, distractor, others or (distractor,))


def answer_text(value: str, kind: str, suffix: str) -> str:
    """The answer after the forced-answer suffix, completing it in the dataset's format."""
    if kind == "choice":
        return value if suffix.rstrip().endswith(":") else f"Answer: {value}"
    return f"{value}}}" if suffix.endswith("\\boxed{") else f"\\boxed{{{value}}}"


def thinking_text(budget: int) -> str:
    return f"[simulated thinking: {budget} tokens]"


# --------------------------------------------------------------------------- the engine


class SimulatedResult:
    """The EngineResult contract for the simulated engine: shards hold answers as text."""

    def __init__(self, counters: dict, suffix: str, prompt_tokens: dict[str, int]):
        self.counters = counters
        self.suffix = suffix
        self._prompt_tokens = prompt_tokens

    def prompt_tokens(self, question_id: str) -> int:
        return self._prompt_tokens[question_id]

    def at_budget(self, sample: dict, budget: int) -> dict:
        answer = sample["forks"][str(budget)]
        return {
            "text": thinking_text(budget) + self.suffix + answer,
            "thinking_tokens": budget,
            "answer_tokens": len(answer) + 1,  # digits and letters are one token each, plus the end
            "forced": True,
        }


class SimulatedEngine(TraceEngine):
    """Fills the shards of one trace directory from the planted surface."""

    name = "simulated"

    def __init__(self, spec: EngineSpec, stop_requested=lambda: False):
        super().__init__(spec, stop_requested)
        if "simulation" not in self.key:
            raise SimulationError(
                "the generation's key has no `simulation` section; fix: add a `simulation` section with a "
                "surface for this dataset under simulation.datasets (see config/simulated.yaml)"
            )
        self.simulation = self.key["simulation"]
        self.kind = self.key["dataset"]["kind"]
        checkpoint = SimulatedCheckpoint.load(spec.checkpoint_path, self.simulation["parameters"])
        self.surface = Surface(self.simulation, checkpoint, self.key["kv"])
        self.stream = content_id({"checkpoint": self.key["checkpoint"], "kv": self.key["kv"],
                                  "dataset": self.simulation["dataset"], "seed": self.key["sampling"]["seed"]})
        self.counters = {"decode_tokens": 0, "prefill_tokens": 0, "fork_tokens": 0}
        log.info("simulated checkpoint: %.3f GiB of %d-bit weights, scale %.3f, distractor share %.2f",
                 self.surface.checkpoint.weight_gib, self.surface.checkpoint.bits, self.surface.scale,
                 self.surface.distractor_share)

    def __call__(self, questions, fresh, incomplete, budgets) -> SimulatedResult:
        suffix = self.key["forcing"]["forced_answer_suffix"]
        prompts = {q["question_id"]: self._prompt_tokens(q) for q in questions}
        by_id = {q["question_id"]: q for q in questions}
        for question_id, shard in incomplete.items():  # stored samples first: a fresh question may have some
            self._check_stop()
            self._fill(by_id[question_id], first_samples(shard, self.samples_of(question_id)), budgets, suffix, prompts[question_id])
            write_shard(self.trace_dir, question_id, shard["samples"])
        for question_id, indices in new_samples(self.trace_dir, fresh, self.samples_of).items():
            self._check_stop()
            records = [{"sample_idx": i, "think_ids": [], "closed_thinking": False, "answer_ids": [], "forks": {}}
                       for i in indices]
            self._fill(by_id[question_id], records, budgets, suffix, prompts[question_id])
            write_new_samples(self.trace_dir, question_id, records)
        return SimulatedResult(dict(self.counters), suffix, prompts)

    def _check_stop(self) -> None:
        if self.stop_requested():
            raise Interrupted("stop requested")

    def _prompt_tokens(self, question: dict) -> int:
        text = prompt_text(self.key["prompt"], question["problem"])
        return math.ceil(len(text) / self.simulation["chars_per_token"])

    def _fill(self, question: dict, records: list[dict], budgets, suffix: str, prompt_tokens: int) -> None:
        """Add the missing forks of every sample of one question."""
        planted = plant_question(question, self.kind, self.simulation)
        share = self.surface.distractor_share
        probability = {b: self.surface.probability(b, planted.difficulty) for b in budgets}
        for record in records:
            todo = missing_forks(record, budgets)
            if not todo:
                continue
            sample = (self.stream, planted.question_id, record["sample_idx"])
            solve = uniform(*sample, "solve")
            if uniform(*sample, "distractor") < share:
                wrong = planted.distractor
            else:
                wrong = planted.alternatives[int(uniform(*sample, "wrong") * len(planted.alternatives))]
            for budget in todo:
                slipped = uniform(*sample, "slip", budget) < self.simulation["slip_probability"]
                correct = solve < probability[budget] and not slipped
                answer = answer_text(planted.gold if correct else wrong, self.kind, suffix)
                record["forks"][str(budget)] = answer
                self.counters["fork_tokens"] += len(answer) + 1
            thought = record.get("simulated_horizon", 0)  # a stored sample thinks on from where it stopped
            if not thought:
                self.counters["prefill_tokens"] += prompt_tokens
            self.counters["decode_tokens"] += max(0, max(budgets) - thought)
            record["simulated_horizon"] = max(max(budgets), thought)
