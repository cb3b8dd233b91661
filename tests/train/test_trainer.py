import json

import numpy as np
import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.models import build_model
from luminary.train import CheckpointPolicy, Deployer, Evaluation, OptimizerConfig, Predictor, Trainer
from luminary.core.runs import list_checkpoints
from luminary.train.losses import causal_lm_collate, causal_lm_loss, token_cross_entropy

DETERMINISTIC = ("step", "loss", "lr", "grad_norm", "tokens", "batch_sha256")


def sequences(n, vocab=64, seed=0, ragged=False):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, vocab, size=(int(rng.integers(4, 13)) if ragged else 12)).tolist() for _ in range(n)]


def make_trainer(workdir, accum=1, seed=0, model_seed=0, **kw):
    model = build_model("llama-debug", 64, seed=model_seed)
    deployer = Deployer(workdir=workdir, seed=seed, precision="fp32")
    return Trainer(deployer, causal_lm_collate, causal_lm_loss, model, OptimizerConfig(lr=1e-2),
                   accumulate_grad_batches=accum, **kw)


def test_accumulation_normalises_by_the_global_token_count():
    """Micro-batches of different token counts: the update equals the one-batch update."""
    data = sequences(8, ragged=True)
    # direct computation: mean token loss over the whole batch, one backward
    model = build_model("llama-debug", 64, seed=0)
    batch = causal_lm_collate(data)
    loss, _ = token_cross_entropy(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                  batch["labels"])
    loss.backward()
    ref = [p.grad.clone() for p in model.parameters()]
    for accum, bs in [(1, 8), (4, 2)]:
        m = build_model("llama-debug", 64, seed=0)
        captured = {}

        class Capture(torch.optim.SGD):
            def step(self, closure=None):
                captured["g"] = [p.grad.clone() for p in m.parameters()]

        t = Trainer(Deployer(seed=0, precision="fp32"), causal_lm_collate, causal_lm_loss, m,
                    Capture(m.parameters(), lr=0.0), accumulate_grad_batches=accum, max_grad_norm=None)
        rec = t.fit(data, per_device_batch_size=bs, max_steps=1, shuffle=False)[0]
        assert rec["loss"] == pytest.approx(loss.item(), rel=1e-5)
        for g, r in zip(captured["g"], ref):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_resume_in_process_is_bit_exact(tmp_path):
    data = sequences(40)
    full = make_trainer(tmp_path / "full").fit(data, 4, max_steps=8, checkpoint=CheckpointPolicy(every=3))
    first = make_trainer(tmp_path / "cut").fit(data, 4, max_steps=5, checkpoint=CheckpointPolicy(every=3, at_end=False))
    assert [s for s, _ in list_checkpoints(tmp_path / "cut" / "checkpoints")] == [3]
    rest = make_trainer(tmp_path / "cut", model_seed=99).fit(data, 4, max_steps=8, checkpoint=CheckpointPolicy(every=3))
    assert rest[0]["step"] == 3
    logged = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [[r[k] for k in DETERMINISTIC] for r in logged] == [[r[k] for k in DETERMINISTIC] for r in full]
    assert len(first) == 5


def test_batches_are_a_pure_function_of_the_step():
    data = sequences(10)
    t = make_trainer(None)
    records = t.fit(data, per_device_batch_size=4, max_steps=6)
    # 10 examples, batch 4: step 2 straddles epochs 0 and 1, each epoch its own permutation
    assert len({r["batch_sha256"] for r in records}) == 6
    again = make_trainer(None).fit(data, per_device_batch_size=4, max_steps=6)
    assert [r["batch_sha256"] for r in again] == [r["batch_sha256"] for r in records]


def test_epochs_set_the_number_of_steps():
    t = make_trainer(None)
    assert len(t.fit(sequences(10), per_device_batch_size=4, n_epochs=2)) == 5  # ceil(20 / 4)


def test_bad_lengths_are_errors():
    with pytest.raises(LuminaryError, match="max_steps must be >= 0"):
        make_trainer(None).fit(sequences(4), 2, max_steps=-1)
    with pytest.raises(LuminaryError, match="give max_steps"):
        make_trainer(None).fit(sequences(4), 2)


def test_extra_state_is_checkpointed(tmp_path):
    class Counter:
        def __init__(self):
            self.value = torch.zeros(3)

        def state_dict(self):
            return {"value": self.value}

        def load_state_dict(self, s):
            self.value = s["value"].clone()

    counter = Counter()

    def loss_fn(model, batch, is_training):
        counter.value += 1
        return causal_lm_loss(model, batch)

    model = build_model("llama-debug", 64, seed=0)
    t = Trainer(Deployer(tmp_path, seed=0), causal_lm_collate, loss_fn, model, state={"counter": counter})
    t.fit(sequences(8), 2, max_steps=3)
    fresh = Counter()
    t2 = Trainer(Deployer(tmp_path, seed=0), causal_lm_collate, loss_fn, build_model("llama-debug", 64),
                 state={"counter": fresh})
    t2.source = None
    assert t2.resume()
    assert torch.equal(fresh.value, torch.full((3,), 3.0))


def test_stream_source_restores_its_position(tmp_path):
    class Stream:
        def __init__(self):
            self.pos = 0

        def __iter__(self):
            while True:
                rng = np.random.default_rng(self.pos)
                self.pos += 1
                yield rng.integers(1, 64, size=8).tolist()

        def state_dict(self):
            return {"pos": self.pos}

        def load_state_dict(self, s):
            self.pos = s["pos"]

    full = make_trainer(tmp_path / "a").fit(Stream(), 2, max_steps=6)
    make_trainer(tmp_path / "b").fit(Stream(), 2, max_steps=3)
    rest = make_trainer(tmp_path / "b").fit(Stream(), 2, max_steps=6)
    assert [r["batch_sha256"] for r in rest] == [r["batch_sha256"] for r in full[3:]]
    assert [r["loss"] for r in rest] == [r["loss"] for r in full[3:]]


def test_predictor_keeps_order_and_pads_the_last_batch():
    calls = []

    def collate(xs):
        return {"x": torch.tensor(xs)}

    def pred_fn(model, batch):
        calls.append(len(batch["x"]))
        return batch["x"] * 10

    predictor = Predictor(Deployer(seed=0), collate, pred_fn)
    xs = [5, 1, 4, 2, 3, 9, 7]
    out = predictor.predict(torch.nn.Identity(), xs, per_device_batch_size=3, length_key=lambda v: v)
    assert [int(o) for o in out] == [v * 10 for v in xs]
    assert calls == [3, 3, 3]


def test_eval_loss_is_logged(tmp_path):
    t = make_trainer(tmp_path)
    recs = t.fit(sequences(16), 4, max_steps=4, evaluation=Evaluation(sequences(5, seed=1), every=2))
    assert "eval_loss" in recs[1] and "eval_loss" in recs[3] and "eval_loss" not in recs[0]


@pytest.mark.parametrize("family", ["llama-debug", "crystal-debug"])
@pytest.mark.parametrize("fused", [False, True])
def test_causal_lm_loss_traces_into_one_graph(family, fused):
    """The Trainer compiles ``loss_fn`` around the model: the mask decision is the collate's, made on the
    CPU, so neither an unpadded nor a padded batch breaks the graph (a break is also a device sync)."""
    import torch._dynamo

    model = build_model(family, 64, seed=0)
    unpadded = causal_lm_collate([[1, 2, 3, 4], [5, 6, 7, 8]])
    padded = causal_lm_collate([[1, 2, 3, 4, 5, 6], [1, 2, 3]])
    assert "attention_mask" not in unpadded and padded["attention_mask"].tolist()[1] == [1, 1, 1, 0, 0, 0]
    for batch in (unpadded, padded):
        explained = torch._dynamo.explain(causal_lm_loss)(model, batch, fused=fused)
        assert explained.graph_break_count == 0, [str(r.reason)[:200] for r in explained.break_reasons]
        eager = causal_lm_loss(model, batch, fused=fused)["loss"]
        want = token_cross_entropy(model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                                         use_cache=False).logits, batch["labels"])[0]
        torch.testing.assert_close(eager, want, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()
