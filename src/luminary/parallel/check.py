"""The parity check of a plan: one training step under the mesh against the same step in one process.

A forward pass without gradients proves little: MPT's masked fill, a position
table taken for a token embedding and Falcon's in-place residual all pass it
and then fail at the first ``backward`` (issue 17). So the check is the whole
step the Trainer takes, on the probe input (``luminary.parallel.probe``),
with ``B = 2·dp`` sequences so that every data-parallel rank has its own:

1. the reference: a copy of the model in this process, eval mode (no
   dropout), forward with gradients on all B sequences, the loss
   L = (1/N) Σ_tokens CE(logits, targets), backward, one SGD step
   (``lr`` = 0.1, momentum 0.9, foreach: the optimizer's multi-tensor kernels
   meet DTensors as in training), so the updated weights are w − 0.1·g;
2. the same under the mesh: the plan applied (``apply_tp``), then FSDP2 on
   ``dp`` (``apply_fsdp``, as the Deployer does), the forward inside
   ``tp_forward_context`` on this rank's B/dp sequences, the backward outside
   it (as in ``Trainer._step``), the loss this rank's token sum over the
   global count N times dp (FSDP2 averages gradients over dp), one step;
3. compared: this rank's logits with the reference's rows, the loss summed
   over dp, every gradient and every updated weight gathered whole
   (``full_tensor``), each relative to its own scale.

Targets are the next token for a causal LM, the decoder ids for an
encoder-decoder model, the first token id modulo the classes for a sequence
classifier; a model with no logits is judged by the mean square of its last
hidden state. A failure is one line naming the stage and the first tensor
that differs, and what to do about it.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor

from luminary.core.errors import LuminaryError
from luminary.parallel.apply import apply_fsdp, apply_tp, broadcast_parameters, tp_forward_context
from luminary.parallel.plan import Plan, auto_plan
from luminary.parallel.probe import output_tensors, probe_inputs, run_probe
from luminary.parallel.simulate import close
from luminary.parallel.styles import packed

LR, MOMENTUM = 0.1, 0.9
TOL = {"logits": 1e-5, "loss": 1e-5, "gradient": 1e-4, "weight": 1e-4}
WHAT_TO_DO = ("override the styles of the modules involved (deploy.tp_overrides; "
              "luminary parallel plan shows the plan), or train it data-parallel (deploy.tp: 1)")


def _whole(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().float()


def step_loss(model: nn.Module, inputs: dict[str, Any], count: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(output, Σ of the per-element losses / ``count``, the number of elements); see the module docstring."""
    out = output_tensors(model(**inputs))[0]
    logits = out.full_tensor() if isinstance(out, DTensor) else out
    ids = inputs.get("decoder_input_ids", inputs["input_ids"])
    if logits.ndim == 3 and "decoder_input_ids" not in inputs and logits.shape[1] == ids.shape[1]:
        pred, target = logits[:, :-1], ids[:, 1:]
        if pred.shape[-1] <= int(ids.max()):  # a hidden state, not logits over the vocabulary
            pred = None
    elif logits.ndim == 3:
        pred, target = logits, ids
        pred = pred if pred.shape[-1] > int(ids.max()) else None
    elif logits.ndim == 2:
        pred, target = logits, inputs["input_ids"][:, 0] % logits.shape[-1]
    else:
        pred = None
    if pred is None:
        per = logits.float().pow(2).reshape(-1)
    else:
        per = F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), target.reshape(-1), reduction="none")
    n = per.numel()
    return logits, per.sum() / (count or n), n


def _run(model: nn.Module, inputs: dict[str, Any], count: int | None, scale: float, forward_context):
    with forward_context():
        logits, loss, n = step_loss(model, inputs, count)
    (loss * scale).backward()
    return logits, loss.detach(), n


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, foreach=True)


def _worst(pairs) -> tuple[float, str]:
    """The largest difference over max(1, the reference's largest magnitude), and where."""
    worst, where = 0.0, ""
    for name, got, want in pairs:
        diff = float((got - want).abs().max()) / max(float(want.abs().max()), 1.0) if want.numel() else 0.0
        if not diff <= worst or not where:  # NaN counts as the worst
            worst, where = diff, name
    return worst, where


def check_training_step(model: nn.Module, mesh: DeviceMesh, plan: Plan, seed: int = 0) -> dict[str, Any]:
    """One training step of ``model`` split by ``plan`` on ``mesh`` (dims "dp", "tp", or a 1-D tp mesh)
    against the same step in this process; the differences, or a :class:`LuminaryError`.

    ``model`` is left untouched; every rank must hold the same values (they
    are broadcast from rank 0 first).
    """
    names = mesh.mesh_dim_names or ()
    tp_mesh = mesh["tp"] if "tp" in names else mesh
    dp_mesh = mesh["dp"] if "dp" in names else None
    dp = dp_mesh.size() if dp_mesh is not None else 1
    dp_rank = dp_mesh.get_local_rank() if dp_mesh is not None else 0
    name = type(model).__name__
    ref = copy.deepcopy(model).eval()
    broadcast_parameters(ref)
    par = copy.deepcopy(ref)
    inputs = probe_inputs(ref, batch=2 * dp, seed=seed)
    local = {k: (v.chunk(dp)[dp_rank] if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}

    ref_logits, ref_loss, count = _run(ref, inputs, None, 1.0, contextlib.nullcontext)
    ref_grads = {n: p.grad.detach().float().clone() for n, p in ref.named_parameters() if p.grad is not None}
    _optimizer(ref).step()

    stage = "applying the plan"
    try:
        apply_tp(par, tp_mesh, plan)
        if dp_mesh is not None:
            apply_fsdp(par, dp_mesh)
        stage = "the forward and backward"
        logits, loss, _ = _run(par, local, count, float(dp), tp_forward_context)
        stage = "the optimizer step"
        _optimizer(par).step()
    except LuminaryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model code meeting DTensors: one line, what to do
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise LuminaryError(f"{name}: the tensor-parallel plan fails in a training step ({stage}: "
                            f"{type(exc).__name__}: {first}); {WHAT_TO_DO}") from None
    total = loss.clone()
    if dp_mesh is not None:
        dist.all_reduce(total, group=dp_mesh.get_group())
    rows = ref_logits.detach().float().chunk(dp)[dp_rank]
    grads, weights = [], []
    for n, p in par.named_parameters():
        if n in ref_grads:
            grads.append((n, _whole(p.grad) if p.grad is not None else torch.full_like(ref_grads[n], float("nan")),
                          ref_grads[n]))
    ref_params = dict(ref.named_parameters())
    for n, p in par.named_parameters():
        weights.append((n, _whole(p), ref_params[n].detach().float()))
    found = {
        "logits": _worst([("logits", _whole(logits), rows)]),
        "loss": _worst([("loss", total.float().reshape(1), ref_loss.float().reshape(1))]),
        "gradient": _worst(grads),
        "weight": _worst(weights),
    }
    # every rank judges its own rows; the verdict is the worst over ranks, so all ranks agree on it
    device = next(ref.parameters()).device
    worst = torch.tensor([v for v, _ in found.values()], dtype=torch.float64, device=device)
    worst = torch.nan_to_num(worst, nan=float("inf"))
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    result = {"dp": dp, "tp": tp_mesh.size(), "tolerance": dict(TOL)}
    for (key, (_, where)), value in zip(found.items(), worst.cpu().tolist()):
        result[key] = {"max_rel_diff": value, "at": where}
    for key, limit in TOL.items():
        if not result[key]["max_rel_diff"] <= limit:
            raise LuminaryError(
                f"{name}: a training step under dp {dp} x tp {tp_mesh.size()} differs from one process in the "
                f"{key} of {result[key]['at']} (relative difference {result[key]['max_rel_diff']:.2e} > {limit:g}); "
                f"{WHAT_TO_DO}")
    return result


def plan_tensor_parallel(twin: nn.Module, mesh: DeviceMesh, overrides: dict[str, str] | None = None,
                         check: bool = True, declared: dict[str, str] | None = None) -> Plan:
    """The automatic plan for ``twin`` (a real model), checked numerically on a copy of it.

    ``mesh``: the ("dp", "tp") mesh (or a 1-D tensor-parallel one). With
    ``check`` the copy takes one whole training step under the mesh against
    one process (``luminary.parallel.check``: logits, loss, every gradient,
    the updated weights); without it, one forward pass on the probe input. A
    plan that changes the numbers is an error, not a silent 4.853 against
    4.849 (specs/redco.md). ``declared``: module glob -> style, applied as given.
    """
    names = mesh.mesh_dim_names or ()
    tp_mesh = mesh["tp"] if "tp" in names and mesh.ndim > 1 else mesh
    plan = auto_plan(twin, tp_mesh.size(), overrides, declared=declared)
    try:
        _verify(twin, mesh, tp_mesh, plan, check and "dp" in names)
    except LuminaryError as exc:
        if not any(packed(e.style) > 1 for e in plan.entries.values()):
            raise
        # a torch whose DTensor lacks what a packed split needs: keep those heads whole, and say so
        plan = auto_plan(twin, tp_mesh.size(), overrides, declared=declared, packed_splits=False)
        _verify(twin, mesh, tp_mesh, plan, check and "dp" in names)
        warnings.warn(f"the packed [q; k; v] split failed its check here ({exc}); those heads stay whole",
                      stacklevel=2)
    return plan


def _verify(twin: nn.Module, mesh: DeviceMesh, tp_mesh: DeviceMesh, plan: Plan, training_step: bool) -> None:
    """The training-step check on ``mesh``, or one forward on the probe under ``tp_mesh``: a LuminaryError."""
    if training_step:
        check_training_step(twin, mesh, plan)
        return
    probe = probe_inputs(twin)
    reference = run_probe(twin, probe)
    split = copy.deepcopy(twin)
    try:
        apply_tp(split, tp_mesh, plan)
        with tp_forward_context():
            out = run_probe(split, probe)
    except LuminaryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model code meeting DTensors: one line
        raise LuminaryError(f"{type(twin).__name__}: the tensor-parallel plan fails on a probe input "
                            f"({type(exc).__name__}); {WHAT_TO_DO}") from None
    if not close(reference, [t.full_tensor() if isinstance(t, DTensor) else t for t in out]):
        raise LuminaryError(
            f"{type(twin).__name__}: the tensor-parallel plan changes the model's output on a probe input; "
            "override the styles of the modules involved (deploy.tp_overrides; luminary parallel plan shows the plan)"
        )


def launch_check(model: str, plan_file: Path, tp: int, dp: int, vocab: int, allow_pickle: bool,
                 timeout_s: float = 900.0) -> dict[str, Any]:
    """Run :func:`check_training_step` under ``torchrun`` on dp × tp CPU processes (gloo); rank 0's result.

    Each process builds ``model`` as ``luminary parallel plan`` does and
    applies the plan written in ``plan_file``, so the plan checked is the one printed.
    """
    import json
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="luminary-tp-check-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={tp * dp}",
               "-m", "luminary.parallel.check", model, str(plan_file), str(out), str(tp), str(vocab),
               "1" if allow_pickle else "0"]
        env = dict(os.environ, OMP_NUM_THREADS="1", LUMINARY_QUIET="1")
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise LuminaryError(f"--check: the training step under dp {dp} x tp {tp} did not finish in "
                                f"{timeout_s:.0f} s") from None
        if out.is_file():
            data = json.loads(out.read_text())
            if "error" in data:
                raise LuminaryError(data["error"])
            return data
        tail = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()][-1:] or ["no output"]
        raise LuminaryError(f"--check: torchrun on {tp * dp} processes failed (exit {proc.returncode}): {tail[0][:200]}")


def _main(argv: list[str]) -> None:
    """One rank of :func:`launch_check`: MODEL PLAN_JSON OUT TP VOCAB ALLOW_PICKLE."""
    import json

    from torch.distributed.device_mesh import init_device_mesh

    from luminary.parallel.report import build_for_plan, read_plan

    model_arg, plan_file, out, tp, vocab, allow_pickle = argv
    dist.init_process_group("gloo")
    try:
        world = dist.get_world_size()
        mesh = init_device_mesh("cpu", (world // int(tp), int(tp)), mesh_dim_names=("dp", "tp"))
        try:
            torch.manual_seed(0)
            result: dict[str, Any] = check_training_step(build_for_plan(model_arg, int(vocab), allow_pickle == "1"),
                                                         mesh, read_plan(Path(plan_file)))
        except LuminaryError as exc:
            result = {"error": str(exc)}
        if dist.get_rank() == 0:
            Path(out).write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
