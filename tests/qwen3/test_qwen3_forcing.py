"""Budget forcing with Qwen3's own tokenizer and chat template, through the HF engine (and
the vLLM engine where its environment exists, tests/vllm): `</think>` (id 151668) ends the
thinking, the forced suffix tokenizes as written, "Wait" replaces an early `</think>`,
thinking is counted from after `<think>`, and the prompt is rendered with enable_thinking."""

from __future__ import annotations
import dataclasses

import pytest
from transformers import AutoTokenizer

from bitbudget.backends.hf import HFEngine
from bitbudget.enginespec import EngineSpec
from bitbudget.forcing import open_thinking, trace_forcing_tokens
from bitbudget.shards import read_shard
from qwen3_models import THINK_CLOSE, THINK_OPEN, random_qwen3, scripted_qwen3
from tests.harness import hand_engine_spec

QWEN3_THINK_OPEN_ID, QWEN3_THINK_CLOSE_ID, QWEN3_IM_END_ID = 151667, 151668, 151645
SUFFIX = "\n</think>\n\n**Final Answer**\n\\boxed{"
THINKING = "\nOkay, adding these numbers gives four."
# a natural answer longer than the forced cap: a summary, then the boxed answer
SUMMARY_IDS = list(range(20000, 20040))
BOXED = " \\boxed{4}"
FORCED_CAP = 8
QUESTIONS = [{"question_id": "q0", "problem": "What is 2+2?", "answer": "4"}]


@pytest.fixture(scope="module")
def tokenizer(qwen3_tokenizer_dir):
    return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)


@pytest.fixture(scope="module")
def script(tokenizer):
    """The token path of a model that thinks briefly, ends its thinking, then summarises."""
    think = tokenizer.encode(THINKING, add_special_tokens=False)
    boxed = tokenizer.encode(BOXED, add_special_tokens=False)
    wait = tokenizer.encode("Wait", add_special_tokens=False)
    after_close = tokenizer.encode("\n\n", add_special_tokens=False)
    answer = after_close + SUMMARY_IDS + boxed
    sequence = [QWEN3_THINK_OPEN_ID, *think, QWEN3_THINK_CLOSE_ID, *answer, QWEN3_IM_END_ID]
    assert len(set(sequence)) == len(sequence), "a scripted path needs distinct tokens"
    path = dict(zip(sequence[:-1], sequence[1:]))
    path[wait[0]] = think[0]  # after "Wait" the model thinks on
    return {"think": think, "answer": answer + [QWEN3_IM_END_ID], "path": path, "wait": wait, "boxed": boxed}


@pytest.fixture(scope="module")
def scripted_model(qwen3_tokenizer_dir, script, tmp_path_factory):
    # off the path (the prompt's last token) the model opens its thinking, as Qwen3 does
    return scripted_qwen3(qwen3_tokenizer_dir, tmp_path_factory.mktemp("scripted-qwen3"), script["path"],
                          default_next=QWEN3_THINK_OPEN_ID)


def spec(budgets, wait_extension=False, natural_cap=1024, temperature=0.0, samples=1, **engine) -> EngineSpec:
    """The spec of a generation at ``budgets`` (its largest the horizon); the model and the
    trace directory are set by the test that runs it."""
    trace_key = {
        "kv": {"method": "full"}, "prompt": "{problem}", "chat_template_kwargs": {"enable_thinking": True},
        "sampling": {"temperature": temperature, "top_p": 0.95, "top_k": 20, "seed": 0,
                     "samples_per_question": samples, "max_answer_tokens": FORCED_CAP,
                     "max_natural_answer_tokens": natural_cap},
        "forcing": {"end_of_thinking": THINK_CLOSE, "wait_extension": wait_extension, "wait_text": "Wait",
                    "forced_answer_suffix": SUFFIX},
        "horizon": max(budgets),
    }
    return hand_engine_spec(trace_key, budgets, "set-by-the-test", **{"batch_size": 4, **engine})


def run_hf(model_dir, trace_dir, job: EngineSpec):
    job = dataclasses.replace(job, checkpoint_path=str(model_dir), trace_dir=str(trace_dir))
    engine = HFEngine(job)
    result = engine(QUESTIONS, [q["question_id"] for q in QUESTIONS], {}, list(job.budgets))
    return result, read_shard(trace_dir, "q0")["samples"]


def test_tokens_of_the_forcing_config(tokenizer):
    tokens = trace_forcing_tokens(tokenizer, spec([16]).trace_key)
    assert tokens.end_of_thinking == QWEN3_THINK_CLOSE_ID
    assert tokens.start_of_thinking == QWEN3_THINK_OPEN_ID
    assert tokens.eos == QWEN3_IM_END_ID
    # the suffix closes the thinking with the special token, not with its characters
    assert tokens.suffix[1] == QWEN3_THINK_CLOSE_ID and tokens.suffix.count(QWEN3_THINK_CLOSE_ID) == 1
    assert tokenizer.decode(list(tokens.suffix), skip_special_tokens=False) == SUFFIX
    assert tokenizer.decode(list(tokens.wait)) == "Wait" and len(tokens.wait) == 1


def test_prompt_rendered_with_thinking_and_opened(tokenizer):
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+2?"}],
                                             add_generation_prompt=True, tokenize=True, return_dict=False,
                                             enable_thinking=True)
    tokens = trace_forcing_tokens(tokenizer, spec([16]).trace_key)
    assert tokenizer.decode(rendered).endswith("<|im_start|>assistant\n")
    assert open_thinking(rendered, tokens) == rendered + [QWEN3_THINK_OPEN_ID]
    # a template that closed the thinking already (enable_thinking false) is left alone
    closed = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+2?"}],
                                           add_generation_prompt=True, tokenize=True, return_dict=False,
                                           enable_thinking=False)
    assert QWEN3_THINK_CLOSE_ID in closed and open_thinking(closed, tokens) == closed
    assert open_thinking(rendered + [QWEN3_THINK_OPEN_ID], tokens) == rendered + [QWEN3_THINK_OPEN_ID]


def test_hf_natural_end_of_thinking_and_forced_fork(scripted_model, script, tmp_path):
    short = len(script["think"]) // 2
    result, samples = run_hf(scripted_model, tmp_path / "trace", spec([short, 64]))
    assert result.prompts["q0"][-1] == QWEN3_THINK_OPEN_ID  # the thinking was opened in the prompt
    (sample,) = samples
    # thinking counted from after <think>: exactly the scripted thinking, </think> not in it
    assert sample["think_ids"] == script["think"]
    assert sample["closed_thinking"] is True
    # the natural answer is whole: longer than the forced cap, ends with the boxed answer and eos
    assert sample["answer_ids"] == script["answer"]
    assert len(sample["answer_ids"]) > FORCED_CAP
    # below the natural length the fork is forced: think[:T] + suffix, then "4}" and eos
    fork = sample["forks"][str(short)]
    assert fork == script["boxed"][-2:] + [QWEN3_IM_END_ID]


def test_hf_natural_answer_cap(scripted_model, script, tmp_path):
    cap = len(SUMMARY_IDS) // 2
    _, (sample,) = run_hf(scripted_model, tmp_path / "trace", spec([64], natural_cap=cap))
    assert sample["closed_thinking"] and sample["answer_ids"] == script["answer"][:cap]


def test_hf_wait_replaces_an_early_end_of_thinking(scripted_model, script, tmp_path):
    horizon = 3 * (len(script["think"]) + 1) + 2
    _, (sample,) = run_hf(scripted_model, tmp_path / "trace", spec([horizon], wait_extension=True))
    think = sample["think_ids"]
    assert len(think) == horizon and not sample["closed_thinking"]
    assert QWEN3_THINK_CLOSE_ID not in think
    cycle = script["think"] + script["wait"]
    assert think == (cycle * 4)[:horizon]
    # at the horizon the answer is forced
    assert sample["forks"][str(horizon)] == script["boxed"][-2:] + [QWEN3_IM_END_ID]


def test_hf_random_weights_sampling(qwen3_tokenizer_dir, tokenizer, tmp_path):
    """A random-weight Qwen3 sampling freely: every sample thinks to the horizon or closes,
    forks answer within the cap, and the decoded text of a fork holds the suffix once."""
    from bitbudget.forcing import sample_at_budget

    model = random_qwen3(qwen3_tokenizer_dir, tmp_path / "random-qwen3")
    result, samples = run_hf(model, tmp_path / "trace", spec([6, 12], temperature=1.0, samples=2))
    assert result.prompts["q0"][-1] == QWEN3_THINK_OPEN_ID
    for sample in samples:
        assert QWEN3_THINK_OPEN_ID not in sample["think_ids"][:1]
        assert len(sample["think_ids"]) <= 12
        at = sample_at_budget(sample, 6, result.tokens)
        if at["forced"]:
            text = tokenizer.decode(at["ids"], skip_special_tokens=False)
            assert text.count(THINK_CLOSE) == 1 and SUFFIX in text
            assert at["thinking_tokens"] == 6 and 1 <= at["answer_tokens"] <= FORCED_CAP


@pytest.mark.vllm
def test_vllm_same_forcing_as_hf(vllm_server, scripted_model, script, tmp_path):
    """The vLLM engine on the scripted Qwen3: natural answer whole, forced fork, natural cap,
    Wait extension; the same shards the HF engine writes."""
    short = len(script["think"]) // 2
    horizon = 3 * (len(script["think"]) + 1) + 2
    vllm = {"name": "vllm", "enforce_eager": True}
    cases = {
        "natural": spec([short, 64], **vllm),
        "capped": spec([64], natural_cap=len(SUMMARY_IDS) // 2, **vllm),
        "wait": spec([horizon], wait_extension=True, **vllm),
    }
    jobs = [{"spec": dataclasses.replace(job, checkpoint_path=str(scripted_model), trace_dir=str(tmp_path / name)),
             "questions": QUESTIONS} for name, job in cases.items()]
    vllm_server.calls(jobs, tmp_path)
    (natural,) = read_shard(tmp_path / "natural", "q0")["samples"]
    assert natural["think_ids"] == script["think"] and natural["closed_thinking"]
    assert natural["answer_ids"] == script["answer"]
    assert natural["forks"][str(short)] == script["boxed"][-2:] + [QWEN3_IM_END_ID]
    (capped,) = read_shard(tmp_path / "capped", "q0")["samples"]
    assert capped["answer_ids"] == script["answer"][: len(SUMMARY_IDS) // 2]
    (waited,) = read_shard(tmp_path / "wait", "q0")["samples"]
    assert waited["think_ids"] == ((script["think"] + script["wait"]) * 4)[:horizon]
    assert not waited["closed_thinking"]
    assert waited["forks"][str(horizon)] == script["boxed"][-2:] + [QWEN3_IM_END_ID]
