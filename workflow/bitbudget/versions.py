"""Identity of the code that produces each kind of artifact.

Bump a version when its stage's output would change for the same inputs; the new
version yields new artifact ids, so only that stage and what follows recompute.
"""

from importlib.metadata import PackageNotFoundError, version

QUANTIZER_VERSION = "rtn-1"
GENERATOR_VERSION = "gen-1"
GRADER_VERSION = "grade-1"
DATASET_LOADER_VERSION = "data-1"

ENGINE_PACKAGES = {"hf": "transformers", "vllm": "vllm"}


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not-installed"


def engine_identity(engine_name: str) -> dict:
    package = ENGINE_PACKAGES[engine_name]
    return {"name": engine_name, "package": package, "version": package_version(package)}
