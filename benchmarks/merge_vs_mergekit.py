"""luminary merge against mergekit (``mergekit-yaml``), same configs, same Llama-shaped models.

Installs mergekit from PyPI into its own virtual environment (.bench/mergekit-venv,
torch pinned to the CPU build first), writes a base model and two "fine-tunes"
(base + seeded noise) as safetensors, and merges them with both tools, each as
a subprocess whose peak RSS is read with ``wait4``. Methods: every one
mergekit 0.1.5 registers. Exact comparison (``EXACT``): linear,
task_arithmetic, ties, dare_ties at density 1, slerp, breadcrumbs,
breadcrumbs_ties, sce, model_stock, nuslerp, multislerp, karcher, nearswap,
ram, ramplus_tl, passthrough. Compared by statistics (``STATISTICAL``: the
share of entries left at the base, and the L1 norm of the merged task vector):
dare_linear at density 0.5, della and della_linear (random masks differ
between tools) and arcee_fusion (its quartiles come from a random sample of
tensors over 10⁶ entries in both tools). Prints one JSON object:
``max_abs_diff`` (exact methods, float32), ``time_ratio`` (wall time to exit),
``durable_time_ratio`` (to exit and then ``os.sync``: the output on disk) and
``rss_ratio`` (ours / mergekit, summed over methods; RSS: the max of peaks),
``exact_methods_time_ratio`` (the same sum over the exact methods only), and a
row per method with both tools' seconds.

    python benchmarks/merge_vs_mergekit.py               # ~1B parameters (llama-1b preset)
    python benchmarks/merge_vs_mergekit.py --size tiny   # a few minutes (start-up dominates)
    python benchmarks/merge_vs_mergekit.py --mergekit /tmp/mk/bin/mergekit-yaml   # an installed mergekit
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from luminary.merge.tensorio import ModelTensors, StreamingWriter
from luminary.models import build_config

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"1b": "llama-1b", "124m": "llama-124m", "tiny": "llama-tiny"}
VOCAB = 32000
EXACT = ["linear", "task_arithmetic", "ties", "dare_ties", "slerp", "breadcrumbs", "breadcrumbs_ties", "sce",
         "model_stock", "nuslerp", "multislerp", "karcher", "nearswap", "ram", "ramplus_tl", "passthrough"]
STATISTICAL = ["dare_linear", "della", "della_linear", "arcee_fusion"]


def ensure_mergekit(venv: Path) -> Path:
    exe = venv / "bin" / "mergekit-yaml"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run(pip + ["torch==2.13.0"], check=True)  # the CPU build, before mergekit pulls one
        subprocess.run(pip + ["mergekit==0.1.5"], check=True)
    return exe


def mergekit_version(exe: Path) -> str:
    python = exe.parent / "python"
    res = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('mergekit'))"],
                         capture_output=True, text=True)
    return res.stdout.strip() or "unknown"


def write_model(folder: Path, preset: str, seed: int | None) -> None:
    """Base weights N(0, 0.02²) (norms 1); a fine-tune adds N(0, 0.002²), seeded per tensor."""
    config = build_config(preset, VOCAB, tie_word_embeddings=False)
    with torch.device("meta"):
        from transformers import LlamaForCausalLM

        shapes = [(n, tuple(p.shape)) for n, p in LlamaForCausalLM(config).named_parameters()]
    folder.mkdir(parents=True)
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = "float32"
    config.save_pretrained(folder)
    writer = StreamingWriter(folder, [(n, torch.float32, s) for n, s in shapes], max_shard_bytes=2 * 10**9)
    for i, (name, shape) in enumerate(shapes):
        gen = torch.Generator().manual_seed(i)
        t = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=gen) * 0.02
        if seed is not None:
            t += torch.randn(shape, generator=torch.Generator().manual_seed(seed * 100_000 + i)) * 0.002
        writer.write(name, t)
    writer.finish()


def config_for(method: str, models: dict[str, Path]) -> dict:
    base, a, b = (str(models[k]) for k in ("base", "a", "b"))
    if method == "linear":
        return {"merge_method": "linear", "models": [{"model": a, "parameters": {"weight": 0.6}},
                                                     {"model": b, "parameters": {"weight": 0.4}}], "dtype": "float32"}
    if method == "slerp":
        return {"merge_method": "slerp", "base_model": base, "models": [{"model": a}],
                "parameters": {"t": [0.1, 0.5, 0.9]}, "dtype": "float32"}
    if method == "passthrough":
        return {"merge_method": "passthrough", "models": [{"model": a}], "dtype": "float32"}
    if method in ("nearswap", "arcee_fusion"):  # a base and one model
        extra = {"parameters": {"t": 0.001}} if method == "nearswap" else {}
        return {"merge_method": method, "base_model": base, "models": [{"model": a}], "dtype": "float32", **extra}
    if method == "karcher":
        return {"merge_method": "karcher", "models": [{"model": a}, {"model": b}], "dtype": "float32"}
    if method in ("model_stock", "ram", "ramplus_tl", "sce"):  # no per-model weights
        extra = {"sce": {"select_topk": 0.5}, "ramplus_tl": {"r": 0.5, "alpha": 0.3}}.get(method)
        return {"merge_method": method, "base_model": base, "models": [{"model": a}, {"model": b}],
                "dtype": "float32", **({"parameters": extra} if extra else {})}
    if method in ("nuslerp", "multislerp"):
        return {"merge_method": method, "base_model": base, "dtype": "float32",
                "models": [{"model": a, "parameters": {"weight": 2.0}}, {"model": b, "parameters": {"weight": 1.0}}]}
    if method in ("breadcrumbs", "breadcrumbs_ties"):
        return {"merge_method": method, "base_model": base, "dtype": "float32",
                "models": [{"model": a, "parameters": {"weight": 1.0, "density": 0.6, "gamma": 0.05}},
                           {"model": b, "parameters": {"weight": 0.5, "density": 0.7, "gamma": 0.01}}]}
    density = {"dare_linear": 0.5, "della": 0.5, "della_linear": 0.5, "ties": 0.6}.get(method, 1.0)
    return {"merge_method": method, "base_model": base, "dtype": "float32",
            "models": [{"model": a, "parameters": {"weight": 0.7, "density": density}},
                       {"model": b, "parameters": {"weight": [0.2, 0.6], "density": density}}]}


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds to exit, wall seconds until the output is on disk, and peak RSS (bytes) of one subprocess.

    ``os.sync`` first: otherwise one tool's timing includes the write-back of the
    models generated (or merged) before it. luminary fsyncs its output before it
    exits; mergekit leaves it in the page cache, so the second time (exit, then
    ``os.sync``) compares the two on equal terms: a merged model on disk.
    """
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "LUMINARY_QUIET": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    os.sync()
    durable = time.perf_counter() - start
    err = proc.stderr.read().decode()
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return elapsed, durable, usage.ru_maxrss * 1024


def compare(ours: Path, theirs: Path, base: Path | None) -> dict:
    x, y = ModelTensors(ours), ModelTensors(theirs)
    if set(x.names()) != set(y.names()):
        raise SystemExit(f"tensor names differ: {sorted(set(x.names()) ^ set(y.names()))[:5]}")
    b = ModelTensors(base) if base else None
    diff, zeros, l1 = 0.0, [0, 0], [0.0, 0.0]
    n = 0
    for name in x.names():
        tx, ty = x.get(name), y.get(name)
        diff = max(diff, (tx - ty).abs().max().item())
        if b is not None:
            tb = b.get(name)
            for k, t in enumerate((tx, ty)):
                zeros[k] += (t == tb).sum().item()
                l1[k] += (t - tb).abs().sum().item()
            n += tb.numel()
    out = {"max_abs_diff": diff}
    if b is not None:
        out.update(ours_unchanged_share=zeros[0] / n, mergekit_unchanged_share=zeros[1] / n,
                   l1_ratio=l1[0] / l1[1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "merge")
    parser.add_argument("--methods", default=",".join(EXACT + STATISTICAL))
    parser.add_argument("--mergekit", type=Path, default=None,
                        help="an installed mergekit-yaml (default: install 0.1.5 into .bench/mergekit-venv)")
    args = parser.parse_args()
    unknown = set(args.methods.split(",")) - set(EXACT + STATISTICAL)
    if unknown:
        raise SystemExit(f"--methods: unknown {sorted(unknown)}; known: {','.join(EXACT + STATISTICAL)}")
    mergekit = args.mergekit or ensure_mergekit(ROOT / ".bench" / "mergekit-venv")
    shutil.rmtree(args.work, ignore_errors=True)
    models = {k: args.work / k for k in ("base", "a", "b")}
    for k, seed in (("base", None), ("a", 1), ("b", 2)):
        write_model(models[k], SIZES[args.size], seed)
    params = sum(i.nbytes for i in ModelTensors(models["base"]).infos.values()) // 4
    for folder in models.values():  # the first timed run must not be the only one to read from disk
        for file in folder.glob("*.safetensors"):
            with open(file, "rb") as f:
                while f.read(1 << 26):
                    pass
    rows, time_ours, time_mk, rss_ours, rss_mk, worst = [], 0.0, 0.0, 0, 0, 0.0
    durable_ours = durable_mk = exact_ours = exact_mk = 0.0
    for i, method in enumerate(args.methods.split(",")):
        cfg = args.work / f"{method}.yaml"
        cfg.write_text(json.dumps(config_for(method, models)))
        ours_out, mk_out = args.work / f"ours-{method}", args.work / f"mk-{method}"
        run_ours = lambda: measure([sys.executable, "-m", "luminary", "merge", str(cfg), "--out", str(ours_out)])
        run_mk = lambda: measure([str(mergekit), str(cfg), str(mk_out)])
        if i % 2:  # alternate who goes first (page cache)
            (t_mk, d_mk, r_mk), (t_o, d_o, r_o) = run_mk(), run_ours()
        else:
            (t_o, d_o, r_o), (t_mk, d_mk, r_mk) = run_ours(), run_mk()
        row = {"method": method, "time_ratio": round(t_o / t_mk, 3), "durable_time_ratio": round(d_o / d_mk, 3),
               "ours_s": round(t_o, 2), "mergekit_s": round(t_mk, 2),
               "rss_ratio": round(r_o / r_mk, 3),
               "ours_rss_gb": round(r_o / 2**30, 2), "mergekit_rss_gb": round(r_mk / 2**30, 2)}
        stats = compare(ours_out, mk_out, models["base"] if method in STATISTICAL else None)
        row.update({k: (round(v, 4) if k != "max_abs_diff" else v) for k, v in stats.items()})
        if method in EXACT:
            worst = max(worst, stats["max_abs_diff"])
            exact_ours, exact_mk = exact_ours + t_o, exact_mk + t_mk
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)  # progress; the result is the one JSON on stdout
        time_ours, time_mk, rss_ours, rss_mk = time_ours + t_o, time_mk + t_mk, max(rss_ours, r_o), max(rss_mk, r_mk)
        durable_ours, durable_mk = durable_ours + d_o, durable_mk + d_mk
        shutil.rmtree(ours_out)
        shutil.rmtree(mk_out)
    shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps({
        "benchmark": "merge_vs_mergekit", "size": args.size, "parameters": params, "dtype": "float32",
        "threads": torch.get_num_threads(), "max_abs_diff": worst, "time_ratio": round(time_ours / time_mk, 3),
        "durable_time_ratio": round(durable_ours / durable_mk, 3),
        "exact_methods_time_ratio": round(exact_ours / exact_mk, 3) if exact_mk else None,
        "rss_ratio": round(rss_ours / rss_mk, 3), "exact_methods": [m for m in args.methods.split(",") if m in EXACT],
        "mergekit": mergekit_version(mergekit), "methods": rows,
    }))


if __name__ == "__main__":
    main()
