"""Jobs the multi-process tests run under torchrun (each rank runs this file).

    python -m torch.distributed.run --standalone --nproc-per-node 4 tests/parallel/worker.py \
        OUT parity:2 steps:2 badplan:2 moe:save fit:2 fit_ac:2 reshard:4,1
    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/parallel/worker.py \
        OUT parity:2 fallback:2 moe:load:DIR resume:2:RUN fit_fp8:1 killsave:2

Several checks share one launch (starting processes is the slow part). Rank 0
writes what it measured as JSON under OUT; the tests compare it with one process.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor

import tp_fixtures as tf  # noqa: E402 (beside this file)
from luminary.train import CheckpointPolicy, Predictor
from luminary.train.deployer import Deployer
from luminary.train.losses import causal_lm_collate

OUT = Path(sys.argv[1])
RANK = int(os.environ["RANK"])


def write(name: str, data) -> None:
    if RANK == 0:
        (OUT / name).write_text(json.dumps(data, indent=1))


def parity(tp: str) -> None:
    """Loss and every gradient against the unsplit model on the whole batch."""
    d = Deployer(seed=0, tp=int(tp), precision="fp32", verbose=False)
    results = {}
    for name, build in tf.parity_models():
        model = build()
        ids, dec = tf.parity_batch(name == "t5")
        ref = copy.deepcopy(model)
        ref_loss, _ = tf.lm_loss(ref, ids, dec)
        ref_loss.backward()
        ref_grads = {n: p.grad for n, p in ref.named_parameters()}
        ref_norm = float(torch.nn.utils.get_total_norm(list(ref_grads.values())))
        par = d.prepare_model(model)
        lo, hi = d.rank_slice(ids.shape[0])
        with d.forward_context():
            loss, count = tf.lm_loss(par, ids[lo:hi], None if dec is None else dec[lo:hi])
        (loss * count).backward()
        total_loss, total_count = d.all_reduce_sum(torch.stack([loss.detach() * count, count.float()])).tolist()
        norm = float(d.clip_grad_norm(par, None, d.grad_scale(torch.tensor(total_count))))
        worst = 0.0
        for n, p in par.named_parameters():
            g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
            worst = max(worst, float((g - ref_grads[n]).abs().max()))
        results[name] = {"loss_ref": float(ref_loss), "loss": total_loss / total_count,
                         "grad_max_diff": worst, "grad_norm_ref": ref_norm, "grad_norm": norm}
    write(f"parity_tp{tp}.json", results)


def steps(tp: str, n: str = "3") -> None:
    """Issue 17's families: prepared by the Deployer (its plan checked by one training step on the mesh),
    then ``n`` AdamW steps against one process, every step's loss and every gradient compared;
    the families that cannot split are refused at ``prepare_model`` with one line."""
    from luminary.core.errors import LuminaryError

    d = Deployer(seed=0, tp=int(tp), precision="fp32", verbose=False)
    results = {}
    for name, build in tf.step_models():
        model = build()
        ref = copy.deepcopy(model)
        par = d.prepare_model(model)
        opt_ref = torch.optim.AdamW(ref.parameters(), lr=1e-3, foreach=True)
        opt_par = torch.optim.AdamW(par.parameters(), lr=1e-3, foreach=True)
        loss_diff = grad_diff = 0.0
        for step in range(int(n)):
            ids, dec = tf.parity_batch(name in ("bart", "t5"))
            ids = (ids + step) % tf.VOCAB  # a new batch each step
            ref_loss, _ = tf.lm_loss(ref, ids, dec)
            ref_loss.backward()
            lo, hi = d.rank_slice(ids.shape[0])
            with d.forward_context():
                loss, count = tf.lm_loss(par, ids[lo:hi], None if dec is None else dec[lo:hi])
            (loss * count).backward()
            total_loss, total_count = d.all_reduce_sum(torch.stack([loss.detach() * count, count.float()])).tolist()
            d.clip_grad_norm(par, None, d.grad_scale(torch.tensor(total_count)))
            grads = {n: p.grad for n, p in ref.named_parameters()}
            for pname, p in par.named_parameters():
                g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
                grad_diff = max(grad_diff, float((g - grads[pname]).abs().max()))
            loss_diff = max(loss_diff, abs(total_loss / total_count - float(ref_loss)))
            for o in (opt_ref, opt_par):
                o.step()
                o.zero_grad(set_to_none=True)
        results[name] = {"loss_max_diff": loss_diff, "grad_max_diff": grad_diff, "steps": int(n)}
    for name, build, _ in tf.refused_models():
        try:
            d.prepare_model(build())
            results[name] = {"refused": None}
        except LuminaryError as exc:
            results[name] = {"refused": str(exc)}
    write(f"steps_tp{tp}.json", results)


def badplan(tp: str) -> None:
    """Qwen3 with its attention declared local in ``deploy.tp_plan`` (exact forward, partial per-head norm
    gradients): the Deployer's training-step check refuses it; with ``tp_check: false`` it is taken as told."""
    from luminary.core.errors import LuminaryError

    plan_file = OUT / "declared_plan.json"
    if RANK == 0:
        plan_file.write_text(json.dumps({"model.layers.*.self_attn.[qkv]_proj": "colwise"}))
    torch.distributed.barrier() if torch.distributed.is_initialized() else None
    found = {}
    for check in (True, False):
        d = Deployer(seed=0, tp=int(tp), precision="fp32", verbose=False, tp_plan=str(plan_file), tp_check=check)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
        try:
            model = d.prepare_model(dict(tf.parity_models())["qwen3"]())
            found[str(check)] = {"error": None, "q_proj": type(model.model.layers[0].self_attn.q_proj.weight).__name__}
        except LuminaryError as exc:
            found[str(check)] = {"error": str(exc)}
    write("badplan.json", found)


def fallback(tp: str) -> None:
    """GPT-2's packed split, then the same with the packed style's output made wrong: the Deployer's
    plan falls back to whole heads for c_attn and warns."""
    import warnings

    from luminary.parallel import styles
    from luminary.parallel.check import plan_tensor_parallel

    d = Deployer(seed=0, tp=int(tp), precision="fp32", verbose=False)
    build = dict(tf.parity_models())["gpt2"]
    name = "transformer.h.0.attn.c_attn"
    found = {"normal": plan_tensor_parallel(build(), d.mesh).entries[name].style}
    right = styles._PackedColwise._local_output
    styles._PackedColwise._local_output = staticmethod(lambda mod, out, mesh: right(mod, out, mesh).flip(-1))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            found["fallback"] = plan_tensor_parallel(build(), d.mesh).entries[name].style
    finally:
        styles._PackedColwise._local_output = staticmethod(right)
    found["warning"] = " | ".join(str(w.message) for w in caught)
    write("fallback.json", found)


def fit(tp: str) -> None:
    """The small fine-tune with checkpoints; predictions and the final state's digests."""
    trainer, per_device = tf.make_trainer(OUT / "run", tp_size=int(tp))
    trainer.fit(tf.fit_examples(), per_device, max_steps=tf.STEPS, checkpoint=CheckpointPolicy(every=tf.EVERY))
    preds = Predictor(trainer.deployer, causal_lm_collate, tf.pred_fn).predict(trainer.model, tf.predict_examples(), 2)
    write("preds.json", [float(p) for p in preds])
    write("digests_saved.json", tf.full_digests(trainer.model, trainer.optimizer))


def fit_ac(tp: str) -> None:
    """The same fine-tune with activation checkpointing (applied before TP and FSDP2)."""
    trainer, per_device = tf.make_trainer(OUT / "run_ac", tp_size=int(tp), activation_checkpointing=True)
    trainer.fit(tf.fit_examples(), per_device, max_steps=tf.STEPS, checkpoint=CheckpointPolicy(at_end=False))


def fit_fp8(tp: str) -> None:
    """The same fine-tune with float8 block products (FSDP2 all-gathers, then the cast)."""
    trainer, per_device = tf.make_trainer(OUT / "run_fp8", tp_size=int(tp), float8=True)
    trainer.fit(tf.fit_examples(), per_device, max_steps=tf.STEPS, checkpoint=CheckpointPolicy(at_end=False))


def reshard(tps: str) -> None:
    """Load the last checkpoint of ``fit`` into other meshes of the same world."""
    folder = OUT / "run" / "checkpoints" / f"step_{tf.STEPS:06d}"
    found = {}
    for tp in map(int, tps.split(",")):
        trainer, _ = tf.make_trainer(None, tp_size=tp, model_seed=123)
        trainer.resume(folder)
        found[f"dp{trainer.deployer.dp_size}_tp{tp}"] = tf.full_digests(trainer.model, trainer.optimizer)
    write("digests_resharded.json", found)


def resume(tp: str, run: str) -> None:
    """Continue a run folder from its latest checkpoint (written by another mesh)."""
    trainer, per_device = tf.make_trainer(Path(run), tp_size=int(tp), model_seed=123)
    trainer.fit(tf.fit_examples(), per_device, max_steps=tf.STEPS, checkpoint=CheckpointPolicy(every=tf.EVERY))


def killsave(tp: str) -> None:
    """Train with checkpoints; the second one stops half-written (the test kills the job there)."""
    import luminary.parallel.checkpoint as pc

    real, calls = pc.save_sharded_state, {"n": 0}

    def stalled(folder, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # rank 0 has written the Hugging Face part; no shards, no manifest yet
            if RANK == 0:
                (OUT / "WRITING").write_text(str(folder))
            time.sleep(600)
        return real(folder, *args, **kwargs)

    pc.save_sharded_state = stalled
    trainer, per_device = tf.make_trainer(OUT / "killed", tp_size=int(tp))
    trainer.fit(tf.fit_examples(), per_device, max_steps=tf.STEPS, checkpoint=CheckpointPolicy(every=tf.EVERY))


def moe(action: str, folder: str = "") -> None:
    """A Mixtral (an expert bank split packed) after one AdamW step: its shards saved, or loaded from ``folder``."""
    from luminary.parallel.checkpoint import load_sharded_state, save_sharded_state
    from luminary.train import OptimizerConfig
    from luminary.train.optim import build_optimizer

    d = Deployer(seed=0, tp=2, precision="fp32", verbose=False)
    model = d.prepare_model(dict(tf.parity_models())["mixtral"]())
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-2))
    if action == "save":
        ids, _ = tf.parity_batch(False)
        lo, hi = d.rank_slice(ids.shape[0])
        with d.forward_context():
            loss, count = tf.lm_loss(model, ids[lo:hi])
        (loss * count).backward()
        optimizer.step()
        save_sharded_state(OUT / "moe", model, optimizer)
        write("moe_saved.json", tf.full_digests(model, optimizer))
    else:
        load_sharded_state(Path(folder), model, optimizer)
        write("moe_loaded.json", tf.full_digests(model, optimizer))


JOBS = {"parity": parity, "steps": steps, "badplan": badplan, "fallback": fallback, "fit": fit, "fit_ac": fit_ac,
        "fit_fp8": fit_fp8, "reshard": reshard, "resume": resume, "killsave": killsave, "moe": moe}

if __name__ == "__main__":
    for job in sys.argv[2:]:
        name, *args = job.split(":")
        JOBS[name](*args)
