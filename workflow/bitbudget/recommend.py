"""What to run on a GPU of a given memory, from a finished study's results.

The **recommendation** for a memory budget M (GiB) and a dataset is the most accurate scenario
whose total memory (weights + G x KV cache, the aggregate's ``total_gib``) is at most M; ties go
to the smaller memory, then to the scenario id. Beside it, for each other way of spending the
memory, the most accurate scenario that fits and spends it that way, relative to the
recommendation R:

- **more parameters**: a model with more parameters than R's (``n_params`` larger);
- **more bits**: more bits per weight than R's (``weight_bits`` larger);
- **longer thinking**: a larger token budget T than R's;
- **more samples**: more parallel samples G (majority vote) than R's;
- **compressed KV**: a compressed KV cache (eviction or quantization, ``kv_method`` not
  ``full``) other than R's own KV strategy.

Each alternative carries its accuracy difference to R (alternative minus R, so at most 0) and
that difference's interval from a question-level paired bootstrap: the questions of the dataset
are drawn with replacement (the same draws for every pair of a dataset, seeded by the study's
``analysis.seed`` and the dataset name) and the mean per-question difference is taken on each
draw; ``analysis.bootstrap_samples`` draws, a percentile interval at :data:`INTERVAL_LEVEL`.

A budget below the smallest scenario or above the largest one of a dataset is outside what the
study measured and is refused (:class:`RecommendError`). ``max_seconds`` keeps only the
scenarios whose estimated time per question fits: G x (mean thinking + answer tokens) decoded at
the throughput :mod:`bitbudget.plan` assumes for the model's size and engine.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bitbudget import artifacts, plan
from bitbudget.memory import GIB, format_memory

INTERVAL_LEVEL = 0.95  # the aggregate's accuracy intervals use the same level
DEFAULT_RESULTS = Path("results")
SCENARIOS_FILE = Path("aggregate") / "scenarios.parquet"
QUESTIONS_FILE = Path("aggregate") / "questions.parquet"
GENERATION_META = Path("generations") / "{gen_id}" / "samples.meta.json"
CHECKPOINT_DIR = Path("checkpoints") / "{ckpt_id}"
FULL_KV = "full"
KV_ENGINE = "hf"  # KV-cache strategies other than a full cache need HF-style cache hooks
SERVING_ENGINE = "vllm"  # a full-cache scenario of a real-engine grid (or the simulated one) runs here
# binary units, as the paper's GB; a bare number is GiB
MEMORY_UNITS = {"": GIB, "b": 1, "kb": 2**10, "kib": 2**10, "mb": 2**20, "mib": 2**20,
                "gb": GIB, "gib": GIB, "tb": 2**40, "tib": 2**40}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


class RecommendError(ValueError):
    """The question cannot be answered from these results; the message says why and what to do."""


@dataclass(frozen=True)
class Way:
    """One way of spending memory differently from the recommendation."""

    name: str
    definition: str
    column: str  # the scenario column it compares with the recommendation's


WAYS = (
    Way("more parameters", "a model with more parameters than the recommendation's", "n_params"),
    Way("more bits", "more bits per weight than the recommendation's", "weight_bits"),
    Way("longer thinking", "a larger token budget T than the recommendation's", "token_budget"),
    Way("more samples", "more parallel samples G (majority vote) than the recommendation's", "G"),
    Way("compressed KV", "a compressed KV cache (eviction or quantization) other than the recommendation's",
        "kv"),
)


@dataclass
class Results:
    """A finished study's aggregate tables, with what the recommendation reads beside them."""

    scenarios: pd.DataFrame
    questions: pd.DataFrame
    n_boot: int
    seed: int
    generations: dict  # gen_id -> the generation's trace key (engine, sampling, forcing, KV)
    checkpoints: dict  # ckpt_id -> the checkpoint directory, where the study wrote one


# --------------------------------------------------------------------------- inputs
def parse_memory(text: str) -> float:
    """'24GiB', '24 GB', '300KB', '512MiB' or '24' (GiB) -> GiB. GB means GiB, as in the paper."""
    match = _MEMORY.match(str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in MEMORY_UNITS:
        raise RecommendError(
            f"--memory: cannot read '{text}'; fix: give a number with a unit, e.g. 24GiB, 24GB, 512MiB or "
            f"300KB (binary units: 1 GB = 1024 MB)")
    value = float(match.group(1)) * MEMORY_UNITS[unit] / GIB
    if value <= 0:
        raise RecommendError(f"--memory: {text} is not a memory; fix: give a positive amount, e.g. 24GiB")
    return value


def read_results(results_dir: str | Path = DEFAULT_RESULTS) -> Results:
    """The aggregate tables of a finished study, checked against their metadata."""
    results_dir = Path(results_dir)
    paths = [results_dir / SCENARIOS_FILE, results_dir / QUESTIONS_FILE]
    missing = [str(p) for p in paths if not artifacts.is_complete(p)]
    if missing:
        raise RecommendError(
            f"--results {results_dir}: no finished aggregate ({', '.join(missing)} or its metadata is missing); "
            f"fix: run the study to its aggregate stage (snakemake -c2 results/aggregate/scenarios.parquet) or "
            f"point --results at a study's results folder")
    try:
        scenarios, questions = (artifacts.read_parquet_verified(p) for p in paths)
    except artifacts.ArtifactError as error:
        raise RecommendError(f"--results {results_dir}: {error}") from None
    analysis = artifacts.read_meta(paths[0])["key"].get("analysis", {})
    if not {"bootstrap_samples", "seed"} <= set(analysis):
        raise RecommendError(
            f"--results {results_dir}: {artifacts.meta_path(paths[0])} records no analysis.bootstrap_samples and "
            f"analysis.seed (an older aggregate); fix: rerun it with snakemake --forcerun {paths[0]}")
    gen_ids = scenarios["gen_id"].astype(str).unique() if "gen_id" in scenarios else []
    ckpt_ids = scenarios["ckpt_id"].astype(str).unique() if "ckpt_id" in scenarios else []
    return Results(scenarios, questions, int(analysis["bootstrap_samples"]), int(analysis["seed"]),
                   generation_keys(results_dir, gen_ids), checkpoint_dirs(results_dir, ckpt_ids))


def generation_keys(results_dir: Path, gen_ids) -> dict:
    """gen_id -> trace key from each generation's metadata (absent ones are left out)."""
    keys = {}
    for gen_id in gen_ids:
        path = results_dir / str(GENERATION_META).format(gen_id=gen_id)
        if path.is_file():
            keys[gen_id] = json.loads(path.read_text(encoding="utf-8")).get("key", {}).get("trace_key", {})
    return keys


def checkpoint_dirs(results_dir: Path, ckpt_ids) -> dict:
    """ckpt_id -> the quantized checkpoint directory the study wrote (an unquantized model has none)."""
    dirs = {ckpt_id: results_dir / str(CHECKPOINT_DIR).format(ckpt_id=ckpt_id) for ckpt_id in ckpt_ids}
    return {ckpt_id: str(path) for ckpt_id, path in dirs.items() if path.is_dir()}


# --------------------------------------------------------------------------- per scenario
def run_engine(row: dict) -> str:
    """The engine that runs a scenario: HF for a compressed KV cache or an HF grid, else vLLM."""
    if row.get("engine") == KV_ENGINE or row.get("kv_method", FULL_KV) != FULL_KV:
        return KV_ENGINE
    return SERVING_ENGINE


def answer_tokens(row: dict, trace_key: dict | None) -> int:
    """Answer tokens after the thinking: the sampling setting, else what the context recorded."""
    sampling = (trace_key or {}).get("sampling", {})
    if "max_answer_tokens" in sampling:
        return int(sampling["max_answer_tokens"])
    if _present(row.get("context_tokens")) and _present(row.get("prompt_tokens")):
        return int(row["context_tokens"]) - int(round(row["prompt_tokens"])) - int(row["token_budget"])
    return 0


def seconds_per_question(row: dict, trace_key: dict | None = None) -> float:
    """G x (mean thinking + answer tokens) at the plan's decode throughput for the model and engine."""
    thinking = row.get("mean_thinking_tokens")
    thinking = float(thinking) if _present(thinking) else float(row["token_budget"])
    rate = plan.throughput_for({"path": str(row["model"])}, run_engine(row), plan.DEFAULT_THROUGHPUT,
                               plan.DEFAULT_HF_FACTOR)
    return int(row["G"]) * (thinking + answer_tokens(row, trace_key)) / rate


def engine_settings(row: dict, trace_key: dict | None = None, checkpoint: str | None = None) -> dict:
    """How to run a scenario: vLLM server arguments and sampling parameters, or HF generation
    settings and the KV cache, from the generation's key where the study recorded it."""
    key = trace_key or {}
    sampling = {k: key.get("sampling", {})[k] for k in ("temperature", "top_p", "top_k")
                if k in key.get("sampling", {})}
    budget, answer, g = int(row["token_budget"]), answer_tokens(row, key), int(row["G"])
    model = checkpoint or str(row["model"])
    forcing = key.get("forcing", {})
    budget_forcing = {"think_tokens": budget} | (
        {"forced_answer_suffix": forcing["forced_answer_suffix"], "wait_extension": forcing.get("wait_extension")}
        if "forced_answer_suffix" in forcing else {})
    engine = run_engine(row)
    if engine == SERVING_ENGINE:
        served = key.get("engine", {})
        args = {"--max-model-len": _context(row, budget, answer)}
        args |= {f"--{name.replace('_', '-')}": served[name] for name in ("dtype", "kv_cache_dtype") if name in served}
        return {"engine": engine, "model": model, "command": _command(model, args), "server_args": args,
                "sampling_params": {"n": g, **sampling, "max_tokens": budget + answer},
                "budget_forcing": budget_forcing}
    kv = key.get("kv") or {k: _whole(row[f"kv_{k}"]) for k in ("method", "bits", "budget") if _present(row.get(f"kv_{k}"))}
    return {"engine": engine, "model": model,
            "generate": {"do_sample": True, **sampling, "num_return_sequences": g, "max_new_tokens": budget + answer},
            "kv_cache": kv, "budget_forcing": budget_forcing}


def _context(row: dict, budget: int, answer: int) -> int:
    if _present(row.get("context_tokens")):
        return int(row["context_tokens"])
    prompt = row.get("prompt_tokens")
    return int(round(prompt if _present(prompt) else 0)) + budget + answer


def _command(model: str, args: dict) -> str:
    return " ".join(["vllm serve", model, *(f"{name} {value}" for name, value in args.items())])


def _whole(value):
    """8.0 -> 8 (a column with missing values holds its whole numbers as floats)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------- the choice
def dataset_names(scenarios: pd.DataFrame) -> list[str]:
    return sorted(scenarios["dataset"].astype(str).unique())


def memory_range(scenarios: pd.DataFrame) -> tuple[float, float]:
    return float(scenarios["total_gib"].min()), float(scenarios["total_gib"].max())


class Candidates:
    """The scenarios of one dataset as arrays, ranked once: most accurate first, then less memory,
    then scenario id; the best of any subset is its first member in this order."""

    def __init__(self, scen: pd.DataFrame):
        self.total = scen["total_gib"].to_numpy(dtype=float)
        self.order = np.lexsort((scen["scenario_id"].astype(str).to_numpy(), self.total,
                                 -scen["accuracy"].to_numpy(dtype=float)))
        self.values = {way.column: scen[way.column].to_numpy(dtype=float) for way in WAYS if way.column != "kv"}
        self.kv = scen["kv"].astype(str).to_numpy()
        self.compressed = scen["kv_method"].astype(str).to_numpy() != FULL_KV

    def best(self, mask: np.ndarray) -> int | None:
        """Row position of the best scenario among ``mask``, None when it is empty."""
        ranked = self.order[mask[self.order]]
        return int(ranked[0]) if len(ranked) else None

    def way_mask(self, way: Way, rec: int) -> np.ndarray:
        """Scenarios that spend memory in ``way`` relative to the recommendation at row ``rec``."""
        if way.column == "kv":
            return self.compressed & (self.kv != self.kv[rec])
        column = self.values[way.column]
        return column > column[rec]

    def choose(self, memory_gib: float) -> tuple[int, tuple[int | None, ...]]:
        """Row positions of the recommendation and of the best of each way (None: none fits)."""
        fits = self.total <= memory_gib
        rec = self.best(fits)
        return rec, tuple(self.best(fits & self.way_mask(way, rec)) for way in WAYS)


class PairedBootstrap:
    """Question-level paired bootstrap of accuracy differences between scenarios of one dataset."""

    def __init__(self, questions: pd.DataFrame, scenario_ids, dataset: str, n_boot: int, seed: int):
        wanted = questions[questions["scenario_id"].astype(str).isin(set(map(str, scenario_ids)))]
        table = wanted.pivot_table(index="scenario_id", columns="question_id", values="accuracy", aggfunc="mean")
        self.table = table
        rng = np.random.default_rng([int(seed), zlib.crc32(str(dataset).encode())])
        self.draws = rng.integers(0, table.shape[1], size=(n_boot, table.shape[1])) if table.shape[1] else None

    def difference(self, alternative: str, reference: str) -> tuple[float | None, float | None, float | None]:
        """(mean difference, interval low, interval high) of ``alternative`` minus ``reference``
        over the questions both were graded on (None: no such question)."""
        if self.draws is None or alternative not in self.table.index or reference not in self.table.index:
            return (None, None, None)
        diff = self.table.loc[alternative].to_numpy() - self.table.loc[reference].to_numpy()
        if np.isnan(diff).all():
            return (None, None, None)
        replicates = np.nanmean(diff[self.draws], axis=1)
        alpha = (1 - INTERVAL_LEVEL) / 2
        low, high = np.nanquantile(replicates, [alpha, 1 - alpha])
        return float(np.nanmean(diff)), float(low), float(high)


def configuration(row: dict, results: Results) -> dict:
    """A scenario as the recommendation shows it."""
    key = results.generations.get(str(row.get("gen_id")))
    return {
        "scenario_id": str(row["scenario_id"]), "model": str(row["model"]), "weights": str(row["weights"]),
        "weight_bits": int(row["weight_bits"]), "kv": str(row["kv"]), "kv_method": str(row["kv_method"]),
        "token_budget": int(row["token_budget"]), "G": int(row["G"]), "metric": str(row.get("metric", "")),
        "accuracy": float(row["accuracy"]), "ci_low": float(row["ci_low"]), "ci_high": float(row["ci_high"]),
        "memory": {"weights_gib": float(row["weight_gib"]), "kv_gib": float(row["kv_gib"]),
                   "total_gib": float(row["total_gib"])},
        "seconds_per_question": seconds_per_question(row, key),
        "engine_settings": engine_settings(row, key, results.checkpoints.get(str(row.get("ckpt_id")))),
    }


def _within_time(scenarios: pd.DataFrame, results: Results, max_seconds: float | None) -> pd.DataFrame:
    if max_seconds is None:
        return scenarios
    seconds = [seconds_per_question(row, results.generations.get(str(row.get("gen_id"))))
               for row in scenarios.to_dict("records")]
    return scenarios[np.asarray(seconds) <= max_seconds].reset_index(drop=True)


def check_budget(scenarios: pd.DataFrame, memory_gib: float, dataset: str) -> None:
    """Refuse a budget outside the memory range the study measured for ``dataset``."""
    low, high = memory_range(scenarios)
    if memory_gib < low:
        raise RecommendError(
            f"--memory: {_gib(memory_gib)} is below the smallest configuration studied on {dataset} "
            f"({_gib(low)} total); fix: give at least {_gib(low)}")
    if memory_gib > high:
        raise RecommendError(
            f"--memory: {_gib(memory_gib)} is above the largest configuration studied on {dataset} "
            f"({_gib(high)} total): the study cannot say how to spend more; fix: give at most {_gib(high)}, or add "
            f"larger models, budgets or G to the study")


def dataset_scenarios(results: Results, dataset: str, max_seconds: float | None = None) -> pd.DataFrame:
    """The scenarios of ``dataset`` with an accuracy (and within ``max_seconds`` per question)."""
    scen = results.scenarios[results.scenarios["dataset"].astype(str) == dataset]
    scen = scen[scen["accuracy"].notna()].reset_index(drop=True)
    timed = _within_time(scen, results, max_seconds)
    if timed.empty:
        raise RecommendError(f"--max-seconds: no configuration on {dataset} runs within {max_seconds} s per question; "
                             f"fix: allow more seconds")
    return timed


def describe(scen: pd.DataFrame, memory_gib: float, picked: tuple[int, tuple[int | None, ...]], results: Results,
             bootstrap: PairedBootstrap) -> dict:
    """The recommendation and its alternatives as :func:`recommend` returns them for one dataset."""
    rec_index, alt_indices = picked
    rec = scen.iloc[rec_index]
    alternatives = []
    for way, index in zip(WAYS, alt_indices):
        entry = {"way": way.name, "definition": way.definition}
        if index is None:
            alternatives.append(entry | {"configuration": None})
            continue
        row = scen.iloc[index]
        diff, low, high = bootstrap.difference(str(row["scenario_id"]), str(rec["scenario_id"]))
        alternatives.append(entry | {"configuration": configuration(row.to_dict(), results), "difference": diff,
                                     "difference_ci": [low, high]})
    return {"dataset": str(rec["dataset"]), "memory_gib": memory_gib, "memory_range_gib": list(memory_range(scen)),
            "fitting": int((scen["total_gib"].to_numpy() <= memory_gib).sum()),
            "recommendation": configuration(rec.to_dict(), results), "alternatives": alternatives}


def recommend_dataset(results: Results, dataset: str, memory_gib: float, max_seconds: float | None = None) -> dict:
    """The recommendation and its alternatives for one dataset at ``memory_gib``."""
    scen = dataset_scenarios(results, dataset, max_seconds)
    check_budget(scen, memory_gib, dataset)
    bootstrap = PairedBootstrap(results.questions, scen["scenario_id"], dataset, results.n_boot, results.seed)
    return describe(scen, memory_gib, Candidates(scen).choose(memory_gib), results, bootstrap)


def recommend(results: Results, memory_gib: float, dataset: str | None = None,
              max_seconds: float | None = None) -> dict:
    """The recommendation at ``memory_gib`` for ``dataset``, or for every dataset the budget is
    inside of when none is named."""
    names = dataset_names(results.scenarios)
    if dataset is not None and dataset not in names:
        raise RecommendError(f"--dataset: '{dataset}' is not in these results; fix: use one of {names}")
    if dataset is not None:
        found = [recommend_dataset(results, dataset, memory_gib, max_seconds)]
    else:
        found, refusals = [], []
        for name in names:
            try:
                found.append(recommend_dataset(results, name, memory_gib, max_seconds))
            except RecommendError as error:
                refusals.append(str(error))
        if not found:
            raise RecommendError("\n".join(refusals))
    return {"memory_gib": memory_gib, "max_seconds": max_seconds, "interval_level": INTERVAL_LEVEL,
            "bootstrap_samples": results.n_boot, "datasets": found}


# --------------------------------------------------------------------------- the report's table
def page_data(results: Results) -> dict:
    """Every distinct recommendation of each dataset with the memory from which it holds, for the
    report: the answer changes only where a scenario's total memory is crossed, so the page looks
    up the last step at or below its budget and shows what :func:`recommend` would print. Steps
    name scenarios by id; each configuration is stored once, under ``configurations``."""
    datasets, configurations = {}, {}
    for dataset in dataset_names(results.scenarios):
        scen = dataset_scenarios(results, dataset)
        bootstrap = PairedBootstrap(results.questions, scen["scenario_id"], dataset, results.n_boot, results.seed)
        candidates, steps, last = Candidates(scen), [], None
        for total in np.unique(candidates.total):
            picked = candidates.choose(float(total))
            if picked != last:
                steps.append(_page_step(scen, float(total), picked, results, bootstrap, configurations))
                last = picked
        datasets[dataset] = {"range_gib": list(memory_range(scen)), "steps": steps}
    return {"datasets": datasets, "configurations": configurations, "interval_level": INTERVAL_LEVEL,
            "ways": [{"name": way.name, "definition": way.definition} for way in WAYS]}


def _page_step(scen: pd.DataFrame, total: float, picked: tuple[int, tuple[int | None, ...]], results: Results,
               bootstrap: PairedBootstrap, configurations: dict) -> dict:
    rec_index, alt_indices = picked
    rec_id = _stored(scen.iloc[rec_index], results, configurations)
    alternatives = []
    for index in alt_indices:
        if index is None:
            alternatives.append(None)
            continue
        alt_id = _stored(scen.iloc[index], results, configurations)
        diff, low, high = bootstrap.difference(alt_id, rec_id)
        alternatives.append({"scenario_id": alt_id, "difference": diff, "difference_ci": [low, high]})
    return {"from_gib": total, "recommendation": rec_id, "alternatives": alternatives}


def _stored(row: pd.Series, results: Results, configurations: dict) -> str:
    scenario_id = str(row["scenario_id"])
    if scenario_id not in configurations:
        configurations[scenario_id] = configuration(row.to_dict(), results)
    return scenario_id


# --------------------------------------------------------------------------- text
def _gib(gib: float) -> str:
    return format_memory(gib)


def _config_line(c: dict) -> str:
    return (f"{c['model']} {c['weights']} ({c['weight_bits']}-bit), KV {c['kv']}, T={c['token_budget']:,}, "
            f"G={c['G']}")


def format_dataset(found: dict) -> list[str]:
    rec = found["recommendation"]
    mem = rec["memory"]
    lines = [
        f"dataset {found['dataset']}: {found['fitting']} configurations fit in {_gib(found['memory_gib'])} "
        f"(studied {_gib(found['memory_range_gib'][0])} to {_gib(found['memory_range_gib'][1])})",
        f"  recommended: {_config_line(rec)}",
        f"    accuracy {rec['accuracy']:.3f} ({rec['ci_low']:.3f} to {rec['ci_high']:.3f}); memory "
        f"{_gib(mem['total_gib'])} = weights {_gib(mem['weights_gib'])} + KV {_gib(mem['kv_gib'])}; "
        f"~{rec['seconds_per_question']:.3g} s per question",
        f"    run: {_settings_line(rec['engine_settings'])}",
        "  spending the memory differently (best that fits; difference to the recommendation, paired bootstrap):",
    ]
    for alt in found["alternatives"]:
        c = alt["configuration"]
        if c is None:
            lines.append(f"    {alt['way']:<16} none fits ({alt['definition']})")
            continue
        low, high = alt["difference_ci"]
        lines.append(f"    {alt['way']:<16} {_config_line(c)}: accuracy {c['accuracy']:.3f}, "
                     f"{alt['difference']:+.3f} ({low:+.3f} to {high:+.3f}), memory {_gib(c['memory']['total_gib'])}")
    return lines


def _settings_line(settings: dict) -> str:
    if "command" in settings:
        return f"{settings['command']}; sampling {json.dumps(settings['sampling_params'])}"
    return (f"HF transformers {settings['model']}, generate {json.dumps(settings['generate'])}, "
            f"KV cache {json.dumps(settings['kv_cache'])}")


def format_recommendation(found: dict) -> str:
    head = f"memory budget {_gib(found['memory_gib'])}" + (
        f", at most {found['max_seconds']} s per question" if found["max_seconds"] is not None else "")
    lines = [head]
    for entry in found["datasets"]:
        lines += format_dataset(entry)
    return "\n".join(lines)
