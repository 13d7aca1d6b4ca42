"""Random small studies for the referee's property tests (hypothesis strategies).

A study has 2-6 weight sizes (Qwen3-like models at 4, 8 or 16 bits, placed by their own
parameter counts and a random scale so the paper's cuts fall anywhere), a main grid (full KV,
G >= 1) on one engine and a KV grid (full, quantized, eviction, G = 1) on another, eviction
budgets that sometimes exceed the token budget (cells that never evict), accuracies on a
coarse grid (ties) or not, and maj@G scenarios without an estimate (NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

#: label -> (parameters, layers): Qwen3 sizes (the paper's models)
MODELS = {"0.6B": (0.6e9, 28), "1.7B": (1.7e9, 28), "4B": (4.0e9, 36), "8B": (8.2e9, 36),
          "14B": (14.8e9, 40), "32B": (32.8e9, 64)}
BUDGETS = (2000, 6000, 10000, 14000, 18000, 22000, 26000, 30000)
FINE_BUDGETS = tuple(range(1000, 32001, 1000))
KV_BUDGETS = (2000, 4000, 8000)
GIB = 2.0**30


@st.composite
def studies(draw, nan_share=st.sampled_from([0.0, 0.0, 0.2, 0.5]), two_engines=st.booleans(),
            non_evicting=st.booleans(), per_question=st.just(False)):
    """(scenarios DataFrame, paper_names, per-question DataFrame or None) of one random small
    study; with ``per_question``, each scenario's accuracy is the mean of 2-8 questions'
    accuracies (k/8: eight samples each)."""
    labels = list(MODELS)
    configs = draw(weight_configs())
    scale = draw(st.sampled_from([0.25, 0.5, 1.0, 1.0, 1.0, 1.5, 2.0, 4.0]))
    budgets = sorted(draw(st.one_of(st.just(BUDGETS), st.lists(st.sampled_from(FINE_BUDGETS), min_size=3,
                                                                 max_size=10, unique=True))))
    gs = [1] + sorted(draw(st.lists(st.sampled_from([2, 3, 4, 8]), max_size=2, unique=True)))
    datasets = draw(st.sampled_from([["aime"], ["aime", "gpqa"]]))
    kv_configs = draw(st.lists(st.sampled_from(configs), max_size=3, unique=True))
    kv_budgets = draw(st.lists(st.sampled_from(KV_BUDGETS), min_size=1, max_size=2, unique=True))
    grid = draw(st.sampled_from([4, 8, 32, 0]))  # accuracies on a k/grid lattice (0: continuous)
    nan = draw(nan_share)
    engines = ("vllm", "hf") if draw(two_engines) else ("hf", "hf")
    if not draw(non_evicting):
        kv_budgets = [b for b in kv_budgets if b < budgets[0]] or [budgets[0] // 2]
    n_questions = draw(st.integers(2, 8)) if draw(per_question) else 0
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    rows = []
    for ds in datasets:
        for label, bits in configs:
            params, layers = MODELS[label]
            weight_gib = params * bits / 8 / GIB * scale
            per_token = layers * 8 * 128 * 2 * 2 / GIB * scale
            common = {"dataset": ds, "model": label, "weights": f"w{bits}", "weight_bits": bits,
                      "weight_gib": weight_gib}
            for T in budgets:
                for G in gs:
                    rows.append(common | _kv("full") | {"engine": engines[0], "grid": "main", "token_budget": T, "G": G,
                                                       "n_samples": 8, "kv_gib_per_seq": T * per_token})
            if (label, bits) not in kv_configs:
                continue
            for T in budgets:
                kvs = [_kv("full")] + [_kv("quantized", bits=b) for b in (2, 4, 8)] + [
                    _kv(m, budget=b) for m in ("streaming_llm", "r_kv") for b in kv_budgets]
                for kv in kvs:
                    held = T if kv["kv_budget"] is None else min(T, kv["kv_budget"])
                    factor = (kv["kv_bits"] + 1) / 16 if kv["kv_bits"] else 1.0
                    rows.append(common | kv | {"engine": engines[1], "grid": "kv", "token_budget": T, "G": 1,
                                               "n_samples": int(rng.choice([4, 8])),
                                               "kv_gib_per_seq": held * per_token * factor})
    df = pd.DataFrame(rows)
    df["kv_gib"] = df["G"] * df["kv_gib_per_seq"]
    df["total_gib"] = df["weight_gib"] + df["kv_gib"]
    df["accuracy"] = _accuracies(df, rng, grid, nan)
    # a cell run by both grids is two scenarios (two generations), as in a study
    df["scenario_id"] = [f"{r.dataset}-{r.model}-{r.weights}-{r.kv}-T{r.token_budget:05d}-G{r.G}-{r.engine}-{r.grid}"
                         for r in df.itertuples()]
    df = df.sort_values("scenario_id", kind="mergesort").reset_index(drop=True)
    questions = _per_question(df, rng, n_questions) if n_questions else None
    return df, {"models": {label: label for label in labels}, "datasets": {"AIME": "aime", "GPQA": "gpqa"}}, questions


def _per_question(df: pd.DataFrame, rng: np.random.Generator, n_questions: int) -> pd.DataFrame:
    """Per-question accuracies (k/8) around each scenario's accuracy, which becomes their mean
    (NaN stays NaN: no estimate)."""
    difficulty = rng.normal(0, 1, n_questions)
    p = np.clip(df["accuracy"].to_numpy(float), 0.01, 0.99)
    logit = np.log(p / (1 - p))[:, None] - difficulty[None, :]
    acc = rng.binomial(8, 1 / (1 + np.exp(-np.nan_to_num(logit)))) / 8
    acc[df["accuracy"].isna().to_numpy()] = np.nan
    df["accuracy"] = acc.mean(axis=1)
    return pd.DataFrame({"scenario_id": np.repeat(df["scenario_id"].to_numpy(), n_questions),
                         "question_id": np.tile([f"q{i}" for i in range(n_questions)], len(df)),
                         "accuracy": acc.ravel()})


@st.composite
def weight_configs(draw):
    """2-6 distinct (model, bits): adjacent models (whose memories meet) or any."""
    labels = list(MODELS)
    n = draw(st.integers(2, 6))
    if draw(st.booleans()):
        bits = draw(st.lists(st.sampled_from([4, 8, 16]), min_size=1, max_size=3, unique=True))
        start = draw(st.integers(0, 3))
        combos = [(label, b) for label in labels[start:] for b in sorted(bits)]
    else:
        combos = draw(st.permutations([(label, b) for label in labels for b in (4, 8, 16)]))
    return combos[:n] if len(combos) >= 2 else [(labels[-2], 16), (labels[-1], 16)]


def _kv(method: str, bits: int | None = None, budget: int | None = None) -> dict:
    name = {"full": "full", "quantized": f"hqq{bits}"}.get(method, f"{method}{budget}")
    return {"kv": name, "kv_method": method, "kv_bits": bits, "kv_budget": budget}


def _accuracies(df: pd.DataFrame, rng: np.random.Generator, grid: int, nan: float) -> np.ndarray:
    """A random surface: weight and token slopes that change sign at a random size, noise,
    KV losses; rounded to the lattice; NaN for a share of the maj@G scenarios."""
    switch = np.exp(rng.uniform(np.log(0.3), np.log(40)))
    x = np.log(df["weight_gib"].to_numpy(float) / switch)
    above = x > 0
    tokens = df["token_budget"].to_numpy(float)
    kv_budget = df["kv_budget"].to_numpy(float)  # NaN without eviction
    evicted = np.log(np.maximum(tokens, kv_budget) / kv_budget)
    kv_bits = df["kv_bits"].to_numpy(float)
    w_slope, t_slope = rng.uniform(0, 1.5, 2), rng.uniform(0, 1.5, 2)
    z = (np.where(above, w_slope[1], w_slope[0]) * x
         + np.where(above, t_slope[1], t_slope[0]) * np.log(tokens / 10000)
         + rng.uniform(-0.8, 0.8) * np.log(df["G"].to_numpy(float)) * np.sign(x)
         - np.nan_to_num(np.select([kv_bits == 2, kv_bits == 4, kv_bits == 8], [1.2, 0.4, 0.05], np.nan))
         * rng.uniform(0, 2)
         - np.nan_to_num(evicted) * rng.uniform(0, 1)
         + rng.normal(0, 0.4, len(df)))
    acc = 1 / (1 + np.exp(-z))
    if grid:
        acc = np.round(acc * grid) / grid
    votes = df["G"].to_numpy() > 1
    acc[votes & (rng.random(len(df)) < nan)] = np.nan
    return acc
