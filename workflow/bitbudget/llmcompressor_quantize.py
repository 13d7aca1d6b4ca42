"""Real quantized checkpoints with llm-compressor: compressed-tensors GPTQ, RTN and W8A8.

Runs in the llm-compressor interpreter (`.venv-llmc`, envs/install.sh llmcompressor):
llm-compressor pins its own compressed-tensors. `bitbudget.quantize.quantize_checkpoint`
dispatches here for `method: gptq` and for any format with a `scheme`; with the format's
`python` naming another interpreter it re-executes as `python -m bitbudget.llmcompressor_quantize`.

Schemes (weight_formats.<name>.scheme):
  W4A16 / W8A16  weight-only int, symmetric, per group of `group_size` input elements
  W8A8           int8 weights per output channel, int8 dynamic per-token activations
`method: gptq` runs GPTQModifier on a calibration set; `method: rtn` runs QuantizationModifier
(round to nearest, no calibration data for weight-only schemes). Embeddings, lm_head and norms
stay unquantized. The checkpoint loads in transformers (compressed-tensors) and in vLLM.

Calibration (weight_formats.<name>.calibration): `source: synthetic` draws problems and
reference completions of the study's synthetic task (kind, seed, difficulties); `source: hub`
loads a split through `datasets` (e.g. HuggingFaceH4/ultrachat_200k, as llm-compressor's
examples) and `source: file` a local JSONL/parquet file; their records give a `messages`
chat (rendered with the model's chat template), a `text`, or a `problem` (a user turn).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bitbudget import versions
from bitbudget.artifacts import atomic_directory
from bitbudget.datasets import load_hub_table
from bitbudget.interpreter import cli_arguments
from bitbudget.memory import architecture_record, count_parameters_of_model, stored_tensor_names
from bitbudget.revisions import local_snapshot
from bitbudget.specs import WeightFormat, needs_calibration
from bitbudget.tasks import make_synthetic_questions, reference_completion

SCHEMES = ("W4A16", "W8A16", "W8A8")


def scheme_of(fmt: WeightFormat) -> str:
    """The compressed-tensors scheme of a weight format: explicit, else from its bits."""
    scheme = fmt.scheme or {4: "W4A16", 8: "W8A16"}.get(fmt.bits)
    if scheme not in SCHEMES:
        raise ValueError(f"weight_formats scheme must be one of {SCHEMES} (bits {fmt.bits}), got {scheme!r}")
    bits = int(scheme[1])
    if bits != fmt.bits:
        raise ValueError(f"weight_formats: scheme {scheme} has {bits}-bit weights but bits is {fmt.bits}")
    return scheme


def calibration_texts(calibration: dict, tokenizer) -> list[str]:
    if calibration["source"] == "synthetic":
        questions = make_synthetic_questions(
            calibration["kind"], calibration["n_samples"], calibration["seed"],
            calibration["min_difficulty"], calibration["max_difficulty"],
        )
        texts = []
        for question in questions:
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": question["problem"]}], add_generation_prompt=True, tokenize=False
            )
            texts.append(prompt + reference_completion(question))
        return texts
    if calibration["source"] == "file":
        import pandas as pd

        path = Path(calibration["file"])
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)
        frame = frame.sample(frac=1.0, random_state=calibration["seed"]).head(calibration["n_samples"])
        return [calibration_text(record, tokenizer) for record in frame.to_dict("records")]
    if calibration["source"] == "hub":
        table = load_hub_table(calibration["hub"]).shuffle(seed=calibration["seed"])
        table = table.select(range(min(calibration["n_samples"], len(table))))
        return [calibration_text(record, tokenizer) for record in table]
    raise ValueError(f"calibration.source must be 'synthetic', 'file' or 'hub', got {calibration['source']!r}")


def calibration_text(record: dict, tokenizer) -> str:
    """A calibration record as model input: a chat (`messages`, as in ultrachat) rendered with
    the model's chat template, a ready `text`, or a `problem` rendered as a user turn."""
    if "messages" in record:
        return tokenizer.apply_chat_template(list(record["messages"]), tokenize=False)
    if "text" in record:
        return str(record["text"])
    if "problem" in record:
        return tokenizer.apply_chat_template([{"role": "user", "content": str(record["problem"])}],
                                             add_generation_prompt=True, tokenize=False)
    raise ValueError(f"calibration record has none of the columns messages, text, problem: {sorted(record)}")


def calibration_dataset(calibration: dict, tokenizer):
    from datasets import Dataset

    texts = calibration_texts(calibration, tokenizer)
    encoded = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=calibration["max_seq_length"])
    return Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})


def recipe(scheme: str, method: str, group_size: int, dampening_frac: float | None = None):
    """The llm-compressor modifier for a scheme: GPTQ or round-to-nearest."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    ignore = ["lm_head"]
    if scheme == "W8A8":
        kwargs = {"targets": ["Linear"], "scheme": "W8A8", "ignore": ignore}
    else:
        weights = QuantizationArgs(num_bits=int(scheme[1]), type="int", symmetric=True,
                                   strategy="group", group_size=group_size)
        kwargs = {"config_groups": {"group_0": QuantizationScheme(targets=["Linear"], weights=weights)},
                  "ignore": ignore}
    if method == "gptq":
        if dampening_frac is not None:
            kwargs["dampening_frac"] = dampening_frac
        return GPTQModifier(**kwargs)
    if method == "rtn":
        return QuantizationModifier(**kwargs)
    raise ValueError(f"method must be 'gptq' or 'rtn' for llm-compressor, got {method!r}")


def quantize_with_llmcompressor(src_dir, out_dir, fmt: WeightFormat, revision: str | None = None) -> dict:
    """Quantize a checkpoint (a directory, or a hub id at `revision`) into a compressed-tensors
    one; return quantization.json."""
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer


    scheme = scheme_of(fmt)
    method = fmt.method
    group_size = fmt.group_size
    calibration = fmt.calibration_set
    source = str(src_dir)
    src_dir, out_dir = local_snapshot(source, revision), Path(out_dir)
    torch.manual_seed(calibration["seed"])
    model = AutoModelForCausalLM.from_pretrained(str(src_dir), dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(str(src_dir))
    if scheme != "W8A8":
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name != "lm_head" and module.in_features % group_size:
                raise ValueError(
                    f"weight_formats group_size {group_size} does not divide in_features "
                    f"{module.in_features} of {name}"
                )
    counts = count_parameters_of_model(model)
    args = {"model": model, "recipe": recipe(scheme, method, group_size, fmt.dampening_frac)}
    if needs_calibration(method):
        args.update(
            dataset=calibration_dataset(calibration, tokenizer),
            num_calibration_samples=calibration["n_samples"],
            max_seq_length=calibration["max_seq_length"],
        )
    with atomic_directory(out_dir) as tmp:
        oneshot(**args)
        model.save_pretrained(tmp, save_compressed=True)
        tokenizer.save_pretrained(tmp)
        for f in src_dir.iterdir():  # chat template, training notes and other side files
            if f.is_file() and not (tmp / f.name).exists() and not f.name.endswith(".safetensors"):
                if f.name not in ("quantization.json", "meta.json") and not f.name.endswith(".meta.json"):
                    shutil.copy2(f, tmp / f.name)
        meta = {
            "bits": fmt.bits,
            "group_size": group_size if scheme != "W8A8" else None,
            "method": method,
            "scheme": scheme,
            "format": "compressed-tensors",
            "version": versions.LLMCOMPRESSOR_QUANTIZER_VERSION,
            "calibration": calibration if needs_calibration(method) else None,
            "n_quantized_params": counts["n_quantized"],
            "n_unquantized_params": counts["n_unquantized"],
            "model": architecture_record(model.config, stored_tensor_names(src_dir)),
            "packages": _versions(),
            "source": source,
            **({"revision": revision} if revision else {}),
        }
        (tmp / "quantization.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("llmcompressor", "compressed-tensors", "torch", "transformers")}


def main(argv=None) -> int:
    """`python -m bitbudget.llmcompressor_quantize --spec spec.json --output checkpoint_dir`.

    spec: {"source": dir or hub id, "format": a weight format's key (WeightFormat.key), "revision": optional}.
    """
    args = cli_arguments("quantize a checkpoint with llm-compressor", argv)
    spec = json.loads(Path(args.spec).read_text())
    quantize_with_llmcompressor(spec["source"], args.output, WeightFormat.from_key(spec["format"]), spec.get("revision"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
