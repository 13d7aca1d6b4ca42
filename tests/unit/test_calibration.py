"""GPTQ calibration texts from each source, through the loaders the quantize job uses."""

import json

from transformers import AutoTokenizer

from bitbudget.llmcompressor_quantize import calibration_texts
from bitbudget.specs import WeightFormat
from tests.harness import REPO

CHATS = REPO / "tests" / "fixtures" / "calibration_chat.jsonl"
TINY = REPO / "resources" / "tiny_models" / "tiny-s"


def _texts(calibration):
    tokenizer = AutoTokenizer.from_pretrained(TINY)
    return tokenizer, calibration_texts(WeightFormat.from_config({"bits": 4, "method": "gptq", "calibration": calibration}).calibration_set,
                                        tokenizer)


def test_hub_chats_are_rendered_with_the_chat_template():
    hub = {"path": "json", "split": "train", "data_files": str(CHATS)}
    tokenizer, texts = _texts({"source": "hub", "hub": hub, "n_samples": 5, "seed": 3})
    chats = [json.loads(line)["messages"] for line in CHATS.read_text().splitlines()]
    rendered = [tokenizer.apply_chat_template(m, tokenize=False) for m in chats]
    assert len(texts) == 5 and len(set(texts)) == 5
    assert all(t in rendered for t in texts)
    assert texts != rendered[:5], "shuffled with the seed"
    _, again = _texts({"source": "hub", "hub": hub, "n_samples": 5, "seed": 3})
    assert again == texts


def test_file_and_hub_sources_render_records_alike():
    hub = {"path": "json", "split": "train", "data_files": str(CHATS)}
    _, from_hub = _texts({"source": "hub", "hub": hub, "n_samples": 16})
    _, from_file = _texts({"source": "file", "file": str(CHATS), "n_samples": 16})
    assert sorted(from_hub) == sorted(from_file)
    assert all("<|im_start|>assistant" in t for t in from_file)
