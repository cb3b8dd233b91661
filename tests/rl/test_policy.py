"""Policies: the teacher-forced Q-values are the logits generation used; folders that cannot generate are refused."""

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.models import build_model
from luminary.rl.policy import Policy, Sampling

SOURCES = ["def f(x):", "import os\nimport sys", "x"]


def generation_logits(policy, ids, mask, steps):
    out = policy.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=0, max_new_tokens=steps,
                                pad_token_id=policy.pad_id, eos_token_id=policy.eos_id,
                                output_logits=True, return_dict_in_generate=True)
    return torch.stack(out.logits, dim=1)  # (B, T, V)


def check_alignment(policy, sources):
    ids, mask = policy.prompts(sources)
    torch.manual_seed(0)
    actions, lengths = policy.generate(policy.model, ids, mask, Sampling(max_new_tokens=6, top_k=0))
    torch.manual_seed(0)
    reference = generation_logits(policy, ids, mask, actions.shape[1])
    q = policy.q_values(policy.model, ids, mask, actions, lengths)
    assert q.shape == reference.shape
    valid = torch.arange(actions.shape[1])[None] < lengths[:, None]
    torch.testing.assert_close(q[valid], reference[valid], rtol=1e-4, atol=1e-4)
    return ids, mask


def test_causal_lm_q_values_match_generation_with_left_padded_prompts(tokenizer):
    model = build_model("llama-debug", len(tokenizer), seed=0, eos_token_id=None).eval()
    policy = Policy(model, tokenizer, max_new_tokens=6)
    ids, mask = check_alignment(policy, SOURCES)
    assert (mask[:, 0] == 0).any(), "the prompts should be of different lengths"


def test_seq2seq_q_values_match_generation(tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
                      decoder_start_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    policy = Policy(T5ForConditionalGeneration(config).eval(), tokenizer, max_new_tokens=6)
    assert policy.kind == "seq2seq"
    check_alignment(policy, SOURCES)


def test_sequences_end_after_their_first_eos(tokenizer):
    policy = Policy(build_model("llama-debug", len(tokenizer), seed=0), tokenizer, max_new_tokens=5)
    eos = tokenizer.eos_token_id
    actions = torch.tensor([[5, eos, 7, 7], [5, 6, 7, 8], [eos, eos, eos, eos]])
    assert policy.lengths(actions).tolist() == [2, 4, 1]
    acts, lengths = policy.actions(["def", "return x + y + z + w"])
    assert lengths[0] == acts[0].tolist().index(eos) + 1  # EOS appended to a target
    assert lengths[1] == 5  # cut to max_new_tokens


def test_a_saved_causal_lm_loads_as_a_policy_and_beam_search_runs(tmp_path, tokenizer):
    model = build_model("crystal-debug", len(tokenizer), seed=0)
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    policy = Policy.load(tmp_path / "m", max_new_tokens=4)
    ids, mask = policy.prompts(SOURCES[:2])
    actions, lengths = policy.generate(policy.model, ids, mask, Sampling(max_new_tokens=4, do_sample=False, num_beams=3))
    assert actions.shape[0] == 2 and (lengths <= 4).all()


def test_a_classifier_folder_is_not_a_generator(tmp_path, tokenizer, cli):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=3)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    with pytest.raises(LuminaryError, match="not a text generator"):
        Policy.load(tmp_path / "bert")
    res = cli("rl", "generate", tmp_path / "bert", "--source", "x")
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not a text generator" in lines[0] and "BertForSequenceClassification" in lines[0]
