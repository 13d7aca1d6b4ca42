"""The natural-answer cap: where it enters a trace key, what the engines and memory read."""

import copy

import pytest
import yaml

from bitbudget.forcing import answer_token_caps, natural_answer_tokens, sampling_key

SAMPLING = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "samples_per_question": 4, "seed": 0,
            "max_answer_tokens": 32}


@pytest.mark.parametrize("wait_extension, natural, in_key", [
    (False, 1024, True),  # acts and differs: part of the key
    (False, 32, False),  # equals the cap natural answers always had: earlier ids kept
    (True, 1024, False),  # thinking never ends early: the cap never acts
])
def test_natural_cap_enters_the_key_only_where_it_acts(wait_extension, natural, in_key):
    sampling = {**SAMPLING, "max_natural_answer_tokens": natural}
    forcing = {"wait_extension": wait_extension}
    key = sampling_key(sampling, forcing)
    assert ("max_natural_answer_tokens" in key) is in_key
    # what the engines run: the cap itself wherever it can act
    if not wait_extension:
        assert natural_answer_tokens(key) == natural
    caps = answer_token_caps(sampling, forcing)
    assert caps == {"forced": 32, "natural": None if wait_extension else natural}


def test_schema_default_and_default_study_ids():
    """The schema fills a natural cap of hundreds of tokens; the default study pins the tiny
    models' 32 (their ids unchanged) and the paper grid (wait extension on) leaves it out."""
    from bitbudget.config import validate_config

    for path, pinned in (("config/config.yaml", True), ("config/paper.yaml", False)):
        config = validate_config(copy.deepcopy(yaml.safe_load(open(path))))
        key = sampling_key(config["sampling"], config["forcing"])
        assert "max_natural_answer_tokens" not in key
        if not pinned:
            assert config["sampling"]["max_natural_answer_tokens"] >= 256
