"""Sampling plans and candidates from causal and seq2seq generators."""

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.scorer.generator import Decoding, Generator, cappy_plan, plan_size


def test_cappy_plan_is_beam4_plus_four_samplers():
    plan = cappy_plan()
    assert [(d.name, d.num_return_sequences) for d in plan] == [
        ("beam4", 1), ("sampling", 4), ("temp0.9", 4), ("topk40", 4), ("topp0.95", 4)]
    kwargs = {d.name: d.generate_kwargs() for d in plan}
    assert kwargs["beam4"] == {"num_return_sequences": 1, "num_beams": 4, "do_sample": False}
    assert kwargs["sampling"] == dict(num_return_sequences=4, num_beams=1, do_sample=True, temperature=1.0,
                                      top_k=0, top_p=1.0)
    assert (kwargs["temp0.9"]["temperature"], kwargs["temp0.9"]["top_k"], kwargs["temp0.9"]["top_p"]) == (0.9, 0, 1.0)
    assert (kwargs["topk40"]["top_k"], kwargs["topk40"]["top_p"]) == (40, 1.0)
    assert (kwargs["topp0.95"]["top_p"], kwargs["topp0.95"]["top_k"]) == (0.95, 0)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 17, 30])
def test_cappy_plan_size(n):
    plan = cappy_plan(n)
    assert plan_size(plan) == n and plan[0].name == "beam4"
    counts = [d.num_return_sequences for d in plan[1:]]
    assert not counts or max(counts) - min(counts) <= 1


def test_cappy_plan_needs_a_candidate():
    with pytest.raises(LuminaryError, match="at least one"):
        cappy_plan(0)


def test_candidates_in_plan_order_and_beam_is_transformers_beam_search(llama_dir):
    gen = Generator.from_pretrained(llama_dir, max_new_tokens=8, min_new_tokens=3, batch_size=2)
    instructions = ["def add(a, b):", "import os\n", "class Point:"]
    out = gen.generate(instructions, cappy_plan(), seed=3)
    assert [len(c) for c in out] == [17, 17, 17]
    assert [c["decoding"] for c in out[0]] == ["beam4"] + ["sampling"] * 4 + ["temp0.9"] * 4 + ["topk40"] * 4 + ["topp0.95"] * 4
    # beam candidate = transformers' beam search on the lone prompt (left padding changes nothing)
    for instruction, cands in zip(instructions, out):
        ids = gen.tokenizer(instruction, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            ref = gen.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=4, do_sample=False,
                                     min_new_tokens=3, max_new_tokens=8, pad_token_id=gen.pad_id)
        assert cands[0]["text"] == gen.tokenizer.decode(ref[0, ids.shape[1]:], skip_special_tokens=True).strip()
    # a pure function of the seed; the caller's RNG is untouched
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    again = gen.generate(instructions, cappy_plan(), seed=3)
    assert torch.equal(torch.rand(1), before)
    assert again == out
    assert gen.generate(instructions, cappy_plan(), seed=4) != out


def test_stop_strings_cut_candidates(llama_dir):
    gen = Generator.from_pretrained(llama_dir, max_new_tokens=12, stop=["e"])
    for cands in gen.generate(["def f():"], cappy_plan(5)):
        assert all("e" not in c["text"] for c in cands)


def test_seq2seq_generator(t5_dir):
    gen = Generator.from_pretrained(t5_dir, max_new_tokens=6)
    out = gen.generate(["translate: hello", "x"], [Decoding(name="greedy"), Decoding(name="s", do_sample=True,
                                                                                    num_return_sequences=3)])
    assert [[c["decoding"] for c in cands] for cands in out] == [["greedy", "s", "s", "s"]] * 2


def test_self_scoring_is_the_mean_token_log_likelihood_with_the_eos(llama_dir):
    gen = Generator.from_pretrained(llama_dir, prompt_template="Q: {instruction}\nA:")
    prompt = gen.tokenizer("Q: hello\nA:", add_special_tokens=False)["input_ids"]
    answer = gen.tokenizer(" world", add_special_tokens=False)["input_ids"]
    eos = gen.tokenizer.eos_token_id
    assert eos is not None
    with torch.no_grad():
        logits = gen.model(input_ids=torch.tensor([prompt + answer + [eos]])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    terms = [logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(answer + [eos])]
    assert gen.log_likelihood(["hello"], [" world"])[0] == pytest.approx(sum(terms) / len(terms), abs=1e-5)
    without = gen.log_likelihood(["hello"], [" world"], include_eos=False)[0]
    assert without == pytest.approx(sum(terms[:-1]) / len(answer), abs=1e-5)


def test_seq2seq_self_scoring_counts_the_closing_eos(t5_dir):
    """As the original's T5 labels, tokenizer(response) with its </s>."""
    gen = Generator.from_pretrained(t5_dir)
    enc = gen.tokenizer("translate: hello", return_tensors="pt")
    labels = gen.tokenizer("world", add_special_tokens=False)["input_ids"] + [gen.tokenizer.eos_token_id]
    with torch.no_grad():
        logits = gen.model(**enc, labels=torch.tensor([labels])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    expected = sum(logp[i, t].item() for i, t in enumerate(labels)) / len(labels)
    assert gen.log_likelihood(["translate: hello"], ["world"])[0] == pytest.approx(expected, abs=1e-5)


def test_prompt_template_must_hold_the_instruction(llama_dir):
    with pytest.raises(LuminaryError, match="prompt_template"):
        Generator.from_pretrained(llama_dir, prompt_template="no slot")
