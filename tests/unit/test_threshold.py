"""Threshold fitting and frontier tests on synthetic studies with a known answer."""

import numpy as np
import pandas as pd
import pytest

from bitbudget import frontier, threshold


DENSE_BITS = (2, 3, 4, 5, 6, 8, 16)


@pytest.mark.parametrize("bits", [(4, 8, 16), DENSE_BITS], ids=["3-formats", "7-formats"])
@pytest.mark.parametrize("true_gb", [1.4, 2.55, 3.0, 5.39, 7.0, 12.0])
def test_known_threshold_lies_inside_bootstrap_interval(true_gb, bits):
    # Below true_gb weights are the better use of memory, above it tokens (a step), and
    # accuracies are sampled with noise: the interval must contain the truth and stay
    # within a few grid steps of it.
    scen, ques = threshold.synthetic_study(threshold_gb=true_gb, seed=int(true_gb * 10), sharpness=np.inf,
                                           n_questions=60, bits=bits)
    res = threshold.fit_threshold(scen, ques, n_boot=200, seed=0)
    assert res["status"] == "ok", res["message"]
    assert res["direction"] == "win above"
    assert res["ci_low"] <= true_gb <= res["ci_high"]
    assert res["ci_low"] <= res["estimate"] <= res["ci_high"]
    sizes = np.sort(scen["weight_gib"].unique())
    cells_spanned = ((sizes > res["ci_low"]) & (sizes < res["ci_high"])).sum() + 1
    assert cells_spanned <= 4, (res["ci_low"], res["ci_high"])
    assert res["n_boot_ok"] == 200
    assert res["n_points"] >= 30 and "bootstrap" in res["method"]


def test_switch_bracket_is_the_grid_cell_around_a_noise_free_threshold():
    scen, ques = threshold.synthetic_study(threshold_gb=2.55, seed=0, sharpness=np.inf,
                                           n_questions=400, n_samples=32, with_variants=False)
    sizes = np.sort(scen["weight_gib"].unique())
    res = threshold.fit_threshold(scen, ques, n_boot=50, seed=0)
    assert res["bracket"] == (sizes[sizes < 2.55].max(), sizes[sizes > 2.55].min())
    assert res["estimate"] == pytest.approx(np.sqrt(res["bracket"][0] * res["bracket"][1]))


def test_more_questions_narrow_the_interval():
    widths = []
    for n_questions, n_samples in ((3, 1), (240, 8)):
        scen, ques = threshold.synthetic_study(threshold_gb=5.39, seed=1, sharpness=np.inf,
                                               n_questions=n_questions, n_samples=n_samples,
                                               bits=DENSE_BITS)
        res = threshold.fit_threshold(scen, ques, n_boot=200, seed=0)
        widths.append(res["ci_high"] / res["ci_low"])
    assert widths[1] < widths[0]


def test_other_kinds_run_and_report_direction():
    scen, ques = threshold.synthetic_study(threshold_gb=2.55, seed=1)
    res = threshold.fit_thresholds(scen, ques, n_boot=50, seed=0)
    assert set(res) == set(threshold.KINDS)
    assert res["samples_vs_tokens"]["direction"] == "win above"
    assert res["eviction_vs_quantization"]["direction"] == "win below"


def test_each_dataset_gets_its_own_fit():
    scen, ques = threshold.synthetic_study(threshold_gb=2.55, seed=3, sharpness=np.inf,
                                           datasets=("aime-like", "gpqa-like"), with_variants=False)
    fits = threshold.fit_thresholds(scen, ques, n_boot=50, seed=0)
    per_ds = fits["weights_vs_tokens"]["by_dataset"]
    assert [d["dataset"] for d in per_ds] == ["aime-like", "gpqa-like"]
    for d in per_ds:
        assert d["status"] == "ok" and d["ci_low"] <= 2.55 <= d["ci_high"]
        assert d["n_points"] < fits["weights_vs_tokens"]["n_points"]
    one = threshold.fit_thresholds(scen[scen["dataset"] == "aime-like"], ques, n_boot=10)
    assert "by_dataset" not in one["weights_vs_tokens"]


def test_not_enough_data_and_no_crossing():
    scen, ques = threshold.synthetic_study(threshold_gb=2.55, seed=1, with_variants=False)
    tiny = scen[(scen["model"] == "m0.6B") & (scen["weights"] == "int4")]
    assert threshold.fit_threshold(tiny, ques, n_boot=10)["status"] == "not enough data"
    assert threshold.fit_threshold(scen.iloc[0:0], None, n_boot=10)["status"] == "not enough data"
    # far below the threshold weights win every comparison: no crossing to fit
    scen2, ques2 = threshold.synthetic_study(threshold_gb=200.0, seed=1, with_variants=False,
                                             n_questions=400, n_samples=16)
    small = scen2[scen2["weight_gib"] < 5]
    res = threshold.fit_threshold(small, ques2, n_boot=10)
    assert res["status"] in {"no crossing", "ok"}
    assert res["share_win"] < 0.3


def test_bootstrap_is_reproducible():
    scen, ques = threshold.synthetic_study(threshold_gb=2.55, seed=2, with_variants=False)
    a = threshold.fit_threshold(scen, ques, n_boot=40, seed=7)
    b = threshold.fit_threshold(scen, ques, n_boot=40, seed=7)
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"])


def _toy():
    rows = [
        # dataset, scenario, model, weights, weight_gib, T, G, kv, total, acc
        ("d", "a", "s", "int8", 1.0, 1000, 1, "full", 1.5, 0.10),
        ("d", "b", "s", "int8", 1.0, 2000, 1, "full", 2.0, 0.20),
        ("d", "c", "l", "int4", 1.8, 1000, 1, "full", 2.2, 0.35),
        ("d", "e", "l", "int4", 1.8, 2000, 1, "full", 2.6, 0.30),  # dominated by c? no: more mem, less acc
        ("d", "f", "l", "int4", 1.8, 1000, 4, "full", 3.4, 0.45),
        ("d", "g", "l", "int4", 1.8, 1000, 1, "hqq4", 2.0, 0.15),
        ("x", "h", "s", "int8", 1.0, 1000, 1, "full", 1.5, 0.5),
    ]
    df = pd.DataFrame(rows, columns=["dataset", "scenario_id", "model", "weights", "weight_gib",
                                     "token_budget", "G", "kv", "total_gib", "accuracy"])
    df["kv_method"] = np.where(df["kv"] == "full", "full", "quantized")
    df["kv_bits"] = np.where(df["kv"] == "full", np.nan, 4)
    df["kv_budget"] = np.nan
    df["ci_low"] = df["accuracy"] - 0.05
    df["ci_high"] = df["accuracy"] + 0.05
    return df


def test_pareto_frontier_per_dataset():
    fr = frontier.pareto_frontier(_toy())
    assert fr[fr["dataset"] == "d"]["scenario_id"].tolist() == ["a", "b", "c", "f"]
    assert fr[fr["dataset"] == "x"]["scenario_id"].tolist() == ["h"]


def test_best_at_budget_classifies_spending():
    out = frontier.best_at_budget(_toy(), [1.0, 1.6, 2.1, 2.5, 10])
    d = out[out["dataset"] == "d"].set_index("budget_gib")
    assert d.loc[1.0, "spend"] == "none"
    assert d.loc[1.6, "scenario_id"] == "a" and d.loc[1.6, "spend"] == "start"
    assert d.loc[2.1, "scenario_id"] == "b" and d.loc[2.1, "spend"] == "tokens"
    assert d.loc[2.5, "scenario_id"] == "c" and d.loc[2.5, "spend"] == "weights"
    assert d.loc[10.0, "scenario_id"] == "f" and d.loc[10.0, "spend"] == "samples"


@pytest.mark.parametrize("kind", ["weights_vs_tokens", "eviction_vs_quantization"])
def test_every_comparison_pairs_equal_memory(kind):
    scen, _ = threshold.synthetic_study(threshold_gb=2.55, seed=1)
    tol = threshold.analysis_default("memory_tolerance")
    res = threshold.fit_threshold(scen, None, n_boot=0, kind=kind)
    assert res["n_points"] >= 10 and res["memory_tolerance"] == tol
    for p in res["points"]:
        gap = abs(p["total_gib"] - p["partner_total_gib"]) / max(p["total_gib"], p["partner_total_gib"])
        assert gap <= tol + 1e-12, p
    # a wider tolerance admits more pairs, a zero tolerance almost none
    wide = threshold.build_comparisons(scen, kind, memory_tolerance=0.3)
    assert len(wide.a) > len(threshold.build_comparisons(scen, kind).a)


def _pair(rows):
    df = pd.DataFrame(rows, columns=["scenario_id", "model", "weights", "weight_gib", "token_budget", "G",
                                     "total_gib", "accuracy"])
    return df.assign(dataset="d", kv="full", kv_method="full")


def test_weights_vs_tokens_needs_equal_memory_not_just_no_more():
    # the longer generation (10 GiB) and the larger model (6 GiB) differ by 40%: the old pairing
    # ("the largest total at or below") compared them; equal memory does not
    rows = [("s-long", "s", "int8", 1.0, 8000, 1, 10.0, 0.5), ("l-short", "l", "int8", 4.0, 1000, 1, 6.0, 0.4)]
    assert len(threshold.build_comparisons(_pair(rows), "weights_vs_tokens").a) == 0
    rows[1] = ("l-short", "l", "int8", 4.0, 1000, 1, 9.7, 0.4)
    comp = threshold.build_comparisons(_pair(rows), "weights_vs_tokens")
    assert len(comp.a) == 1 and comp.x[0] == 1.0
    assert threshold.build_comparisons(_pair(rows), "weights_vs_tokens", memory_tolerance=0.01).a.size == 0


def test_samples_compare_with_the_best_single_sample_of_any_configuration():
    rows = [
        ("s-G8", "s", "int8", 1.0, 2000, 8, 20.0, 0.50),
        ("s-G1", "s", "int8", 1.0, 30000, 1, 4.0, 0.30),   # same configuration, far less memory
        ("l-G1", "l", "bf16", 16.0, 8000, 1, 19.5, 0.60),  # another model at equal memory: the frontier
        ("x-G1", "x", "bf16", 30.0, 2000, 1, 31.0, 0.90),  # more memory: not a candidate
    ]
    res = threshold.fit_threshold(_pair(rows), None, n_boot=0, kind="samples_vs_tokens")
    (p,) = res["points"]
    assert p["partner_id"] == "l-G1" and p["advantage"] == pytest.approx(-0.10) and not p["win"]
    # without a single-sample scenario near its memory there is no comparison
    far = [r for r in rows if r[0] != "l-G1"]
    assert threshold.fit_threshold(_pair(far), None, n_boot=0, kind="samples_vs_tokens")["points"] == []


def _nan_maj(scen: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    out = scen.copy()
    out.loc[rows, "accuracy"] = np.nan
    return out


def test_comparisons_without_an_estimate_are_left_out_not_lost():
    """maj@G scenarios not yet estimable (NaN) fit exactly as if they were absent."""
    scen, _ = threshold.synthetic_study(threshold_gb=4.2, seed=2)
    unestimated = np.flatnonzero((scen["G"] == 8).to_numpy())
    with_nan = threshold.fit_threshold(_nan_maj(scen, unestimated), None, n_boot=0, kind="samples_vs_tokens")
    absent = threshold.fit_threshold(scen.drop(index=unestimated), None, n_boot=0, kind="samples_vs_tokens")
    assert with_nan["status"] == absent["status"] == "ok"
    assert with_nan["bracket"] == absent["bracket"] and with_nan["n_points"] == absent["n_points"]
    compared = np.isin(threshold.build_comparisons(scen, "samples_vs_tokens").a, unestimated).sum()
    assert compared >= 10 and with_nan["n_left_out"] == compared and absent["n_left_out"] == 0
    left = [p for p in with_nan["points"] if not p["estimated"]]
    assert len(left) == compared and all(p["advantage"] is None and not p["win"] for p in left)


def test_each_eviction_quantization_pair_counts_once():
    scen, _ = threshold.synthetic_study(threshold_gb=4.2, seed=1)
    comp = threshold.build_comparisons(scen, "eviction_vs_quantization")
    pairs = [frozenset((a, int(b[0]))) for a, b in zip(comp.a, comp.b)]
    assert len(pairs) >= 10 and len(set(pairs)) == len(pairs)
    assert comp.a_is_win.all()  # option a is always the eviction scenario
    assert scen["kv_method"].iloc[comp.a].isin(["streaming_llm", "r_kv"]).all()


def test_an_eviction_cell_within_its_kv_budget_is_not_eviction():
    """T at or below the KV budget never evicts: a full-KV run, not an eviction scenario."""
    scen, _ = threshold.synthetic_study(threshold_gb=4.2, seed=1)
    quant = scen[scen["kv_method"] == "quantized"]
    fake = quant.assign(kv_method="streaming_llm", kv="stream14k", kv_bits=None, kv_budget=14000, accuracy=0.99,
                        scenario_id=quant["scenario_id"] + "-stream14k")
    study = pd.concat([scen, fake], ignore_index=True)
    comp = threshold.build_comparisons(study, "eviction_vs_quantization")
    used = set(study["scenario_id"].iloc[comp.a]) | {study["scenario_id"].iloc[int(b[0])] for b in comp.b}
    assert not used & set(fake["scenario_id"])
    assert len(comp.a) == len(threshold.build_comparisons(scen, "eviction_vs_quantization").a)


def _null_voting_study(seed: int, n_single: int = 20, n_voting: int = 60, n_questions: int = 40):
    """Majority votes and single samples all at one true accuracy (0.5 on every question), at
    equal memory: the single-sample baseline's true advantage is exactly zero."""
    rng = np.random.default_rng(seed)
    rows, questions = [], []
    for i in range(n_single + n_voting):
        voting = i >= n_single
        sid = f"{'vote' if voting else 'single'}{i}"
        acc_q = rng.binomial(4, 0.5, n_questions) / 4
        rows.append((sid, f"m{i}", "int8", 1.0 + (0.5 if voting else 0.0), 2000, 8 if voting else 1,
                     2.0 if voting else 1.95 + i * 1e-3, float(acc_q.mean())))
        questions += [{"scenario_id": sid, "question_id": f"q{q:03d}", "accuracy": a} for q, a in enumerate(acc_q)]
    return _pair(rows), pd.DataFrame(questions)


def test_the_single_sample_baseline_is_not_the_maximum_of_noisy_estimates():
    """The best of 20 equally good single-sample scenarios, chosen and scored on the same
    questions, beats an equally good majority vote by the maximum's upward bias; chosen on one
    half of the questions and scored on the other, the advantage is unbiased."""
    plug_in, cross_fitted = [], []
    for seed in range(5):
        scen, ques = _null_voting_study(seed)
        for questions, out in ((None, plug_in), (ques, cross_fitted)):
            res = threshold.fit_threshold(scen, questions, n_boot=0, kind="samples_vs_tokens")
            assert len(res["points"]) == 60
            out += [p["advantage"] for p in res["points"]]
    assert np.mean(plug_in) < -0.05  # the maximum of 20 estimates with sd ~0.04
    assert abs(np.mean(cross_fitted)) < 0.01


def test_switch_decisions_of_too_few_sizes_are_not_enough_data():
    switches = threshold.switch_decisions(np.zeros((1, 3)), np.ones((1, 3)))
    assert switches.statuses(np.array([2.0])) == [("not enough data", None)] * 3


def test_on_frontier_is_the_pareto_frontier_column_by_column():
    """Memory and accuracy ties included: one implementation decides both."""
    rng = np.random.default_rng(1)
    scen = pd.DataFrame({"scenario_id": [f"s{i:02d}" for i in rng.permutation(30)],
                         "dataset": rng.choice(["x", "y"], 30), "total_gib": rng.choice([1.0, 2.0, 3.0], 30)})
    acc = rng.choice([0.1, 0.2, 0.3, np.nan], (30, 8))
    on = frontier.on_frontier(scen, acc)
    for b in range(acc.shape[1]):
        expected = set(frontier.pareto_frontier(scen.assign(accuracy=acc[:, b]))["scenario_id"])
        assert set(scen["scenario_id"][on[:, b]]) == expected
