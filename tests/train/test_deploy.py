"""The deploy section: one config for every trainer, the levers in torchtitan's order, logging sinks, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from luminary.core.deploy import DeployConfig
from luminary.core.errors import LuminaryError
from luminary.train import Deployer, Trainer
from luminary.train.losses import causal_lm_collate, causal_lm_loss


def sequences(n=16, seed=0):
    return [np.random.default_rng(seed + i).integers(1, 64, 12).tolist() for i in range(n)]


def test_parallelize_applies_the_levers_in_torchtitans_order(monkeypatch):
    """Tensor parallel, activation checkpointing, per-block compile, FSDP2: the order written in the
    docstring is the order applied (one process: the two middle ones)."""
    import luminary.parallel.apply as apply
    from luminary.models import build_model
    from luminary.parallel.compile import is_compiled
    from luminary.parallel.recompute import is_checkpointed

    assert apply.ORDER == ("tensor_parallel", "activation_checkpointing", "compile", "fsdp")
    calls = []
    real_ac, real_compile = apply.apply_activation_checkpointing, apply.apply_compile

    class Mesh(dict):  # its tp dimension has 2 ranks; the verbs that would use it only record their turn
        def __getitem__(self, key):
            return type("Dim", (), {"size": lambda self: 2})()

    monkeypatch.setattr(apply, "apply_tp", lambda *a, **k: calls.append("tensor_parallel"))
    monkeypatch.setattr(apply, "apply_activation_checkpointing",
                        lambda m: (calls.append("activation_checkpointing"), real_ac(m)))
    monkeypatch.setattr(apply, "apply_compile", lambda m: (calls.append("compile"), real_compile(m)))
    monkeypatch.setattr(apply, "apply_fsdp", lambda *a, **k: calls.append("fsdp"))
    model = build_model("llama-debug", 64, seed=0)
    apply.parallelize(model, Mesh(), DeployConfig(activation_checkpointing=True, compile=True), plan=object())
    assert calls == list(apply.ORDER)
    block = model.model.layers[0]
    assert is_compiled(block) and is_checkpointed(block)  # compile wraps the checkpointed block, not the reverse
    assert type(block).__mro__[1].__name__.startswith("Checkpointed")


def test_a_model_source_is_the_same_model_however_it_is_made(tmp_path):
    """A preset from a seed: the same weights built directly and through the Deployer's meta path;
    a folder: the same tensors as transformers' from_pretrained."""
    from luminary.models import build_model, load_model
    from luminary.models.source import ModelSource

    skeleton = ModelSource.from_preset("llama-debug", 64, seed=3).skeleton()
    assert {p.device.type for p in skeleton.parameters()} == {"meta"}
    assert {b.device.type for b in skeleton.buffers()} == {"cpu"}  # rotary tables are computed, not allocated
    source = ModelSource.from_preset("crystal-debug", 64, seed=3)
    direct = build_model("crystal-debug", 64, seed=3)
    deployed = Deployer(precision="fp32", verbose=False).prepare_model(source)
    for (n, a), (_, b) in zip(direct.state_dict().items(), deployed.state_dict().items()):
        assert torch.equal(a, b), n
    assert deployed.lm_head.weight is deployed.model.embed_tokens.weight  # ties survive allocation
    assert not torch.equal(direct.model.layers[0].mlp.up_proj.weight, build_model("crystal-debug", 64, seed=4)
                           .model.layers[0].mlp.up_proj.weight)
    direct.save_pretrained(tmp_path / "m")
    loaded, ours = load_model(tmp_path / "m"), ModelSource.from_folder(tmp_path / "m").build()
    for (n, a), (_, b) in zip(loaded.state_dict().items(), ours.state_dict().items()):
        assert torch.equal(a, b), n


def test_the_twin_plan_stretched_over_the_blocks_is_the_whole_models_plan():
    """The plan derived on a two-block twin, stretched over six blocks, equals the plan derived on the
    six-block model itself."""
    from luminary.models.source import ModelSource
    from luminary.parallel.apply import expand_plan
    from luminary.parallel.plan import auto_plan

    source = ModelSource.from_preset("llama-debug", 64, seed=0, num_hidden_layers=6)
    twin, whole = source.twin(), source.build()
    assert len(twin.model.layers) == 2
    stretched = expand_plan(auto_plan(twin, 2), twin, source.skeleton())
    direct = auto_plan(whole, 2)
    assert {n: e.style for n, e in stretched.entries.items()} == {n: e.style for n, e in direct.entries.items()}


def test_tensorboard_and_wandb_get_the_same_numbers_as_metrics_jsonl(tmp_path, monkeypatch):
    from luminary.models import build_model
    from luminary.train.sinks import scalars

    monkeypatch.setenv("WANDB_SILENT", "true")
    deployer = Deployer(tmp_path, seed=0, precision="fp32", verbose=False, log=["tensorboard", "wandb"])
    trainer = Trainer(deployer, causal_lm_collate, causal_lm_loss, build_model("llama-debug", 64, seed=0))
    trainer.fit(sequences(), 4, max_steps=3)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    for key in ("loss", "grad_norm", "lr", "tokens"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in rows], key
    assert set(events.Tags()["scalars"]) == set(scalars(rows[0]))  # the same fields
    history = next((tmp_path / "wandb").glob("offline-run-*"))  # offline: nothing leaves the machine
    assert (tmp_path / "wandb_id").read_text().strip() in history.name


def test_resume_purges_the_tensorboard_steps_after_the_checkpoint(tmp_path):
    from luminary.models import build_model
    from luminary.train import CheckpointPolicy

    def trainer():
        return Trainer(Deployer(tmp_path, seed=0, precision="fp32", verbose=False, log=["tensorboard"]),
                       causal_lm_collate, causal_lm_loss, build_model("llama-debug", 64, seed=0))

    trainer().fit(sequences(), 4, max_steps=3, checkpoint=CheckpointPolicy(every=2, at_end=False))
    trainer().fit(sequences(), 4, max_steps=4, checkpoint=CheckpointPolicy(every=2))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [0, 1, 2, 3]  # step 2 of the first run is gone


@pytest.mark.parametrize("deploy, message", [
    ("{tpp: 2}", "deploy.tpp: unknown key; did you mean 'tp'?"),
    ("{float8: true}", "deploy.float8: needs a GPU of compute capability 8.9"),
    ("{tp: 3}", "deploy.tp: the model's num_attention_heads = 4 is not divisible by 3"),
    ("{dp: 2}", "deploy.dp: 2 × deploy.tp 1 needs 2 processes, this run has 1"),
    ("{device: gpu}", "deploy.device: expected auto, cpu, cuda or cuda:N"),
    ("{checkpoints: {keep_last: 0}}", "deploy.checkpoints.keep_last"),
])
def test_bad_deploy_settings_are_one_line_and_nothing_is_written(cli, tmp_path, tokenizer_dir, deploy, message):
    (tmp_path / "a.txt").write_text("def f(x):\n    return x\n" * 50)
    config = tmp_path / "train.yaml"
    config.write_text(f"model: llama-debug\ntokenizer: {tokenizer_dir}\ndata: {{path: {tmp_path / 'a.txt'}, "
                      f"seq_len: 16}}\ntrain: {{per_device_batch_size: 2, max_steps: 1}}\ndeploy: {deploy}\n")
    cli("train", config, "--out", tmp_path / "run").one_line_error(message)
    assert not (tmp_path / "run").exists()


def test_a_capability_refuses_a_lever_its_loss_cannot_take(tmp_path):
    """The scorer's loss is a regression: the fused LM head is refused before anything starts."""
    from luminary.scorer.train import ScorerTrainConfig, train_scorer

    (tmp_path / "pairs.jsonl").write_text('{"instruction": "a", "response": "b", "label": 1.0}\n')
    config = ScorerTrainConfig(model=str(tmp_path), data=str(tmp_path / "pairs.jsonl"),
                               deploy={"fused_cross_entropy": True})
    with pytest.raises(LuminaryError, match="deploy.fused_cross_entropy: this capability's loss is not"):
        train_scorer(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_moved_key_names_its_new_place(cli, tmp_path, tokenizer_dir):
    config = tmp_path / "train.yaml"
    config.write_text(f"model: llama-debug\ntokenizer: {tokenizer_dir}\ndata: {{path: x}}\n"
                      "train: {max_steps: 1}\nmixed_precision: 'no'\n")
    cli("train", config, "--out", tmp_path / "run").one_line_error("mixed_precision: has moved: write it as "
                                                                   "deploy.precision")


def test_one_process_and_python_keywords_share_the_config_defaults():
    d = Deployer(verbose=False, tp=1, precision="fp32")
    assert d.config == DeployConfig(precision="fp32")
    with pytest.raises(LuminaryError, match="deploy.tpp"):
        Deployer(tpp=2)


def test_prefetching_the_next_micro_batch_changes_nothing(tmp_path):
    """deploy.loader.prefetch collates ahead in a thread: the same batches, losses and weights."""
    from luminary.models import build_model

    runs = {}
    for prefetch in (True, False):
        deployer = Deployer(tmp_path / str(prefetch), seed=0, precision="fp32", verbose=False,
                            loader={"prefetch": prefetch})
        trainer = Trainer(deployer, causal_lm_collate, causal_lm_loss, build_model("llama-debug", 64, seed=0),
                          accumulate_grad_batches=2)
        records = trainer.fit(sequences(), 2, max_steps=5)
        runs[prefetch] = ([(r["batch_sha256"], r["loss"], r["grad_norm"]) for r in records],
                          [p.detach().clone() for p in trainer.model.parameters()])
    assert runs[True][0] == runs[False][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[True][1], runs[False][1]))
