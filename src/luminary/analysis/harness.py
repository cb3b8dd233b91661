"""lm-evaluation-harness as a library: local task YAMLs, one model or every checkpoint.

EleutherAI's harness (``lm_eval``, 0.4) defines a task as a YAML file: where
its rows come from (``dataset_path``, ``dataset_kwargs``), how a row becomes a
prompt (``doc_to_text``, ``doc_to_choice``, ``doc_to_target``), what the model
is asked (``output_type``: ``multiple_choice``, ``loglikelihood``,
``loglikelihood_rolling``, ``generate_until``) and the metrics. luminary hands
it the model it already holds (``HFLM(pretrained=model)``), so Crystal
checkpoints, runs and releases are evaluated the way lm-eval evaluates any
Hugging Face model, and LLM360's Analysis360 curve over checkpoints is the
same call at each checkpoint.

What luminary adds around it, for reproducible and offline evaluation:

- Tasks from ``--include`` folders are read here (``yaml.safe_load``), and
  every local path in them (``dataset_kwargs.data_files``, a local
  ``dataset_path``, ``include:``) is resolved against the YAML's own folder and
  refused if it leaves that folder. ``!function`` (Python code beside the
  YAML) is refused: a task folder is data, not code.
- Each result records the data files' sha256, lm-eval's version and the
  resolved task configuration.
- Over checkpoints, each task's metrics are written as
  ``analysis/benchmark_TASK.json``, the file ``luminary report`` draws.

Task names not found in ``--include`` go to lm-eval's own index (its
built-in tasks fetch their data from the Hub, so they need a network or a
filled Hugging Face cache).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_write_json, contained, sha256_file

INSTALL = "pip install 'luminary[eval]'"
LOCAL_BUILDERS = ("json", "csv", "text", "parquet", "arrow")


def require_lm_eval():
    try:
        import lm_eval
    except ImportError:
        raise LuminaryError(f"luminary evaluate needs lm-evaluation-harness ({INSTALL})") from None
    return lm_eval


class _TaskLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that names lm-eval's ``!function`` tag instead of failing on it."""


def _refuse_function(loader, node):
    raise LuminaryError(f"{loader.name}: '!function {node.value}' runs Python from the task folder; luminary "
                        "evaluates declarative tasks only (write the prompt with doc_to_text / doc_to_choice)")


_TaskLoader.add_constructor("!function", _refuse_function)


def _read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_TaskLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise LuminaryError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise LuminaryError(f"{path}: a task file holds a mapping (task, dataset_path, ...)")
    return data


def _resolve_files(value: Any, folder: Path, where: str) -> Any:
    """``data_files`` as str, list or split -> str/list: each relative path made absolute inside ``folder``."""
    if isinstance(value, dict):
        return {k: _resolve_files(v, folder, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_files(v, folder, where) for v in value]
    path = contained(folder, value, where)
    if not path.is_file():
        raise LuminaryError(f"{folder}: {where} '{value}' not found")
    return str(path)


def read_task(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """One task YAML as lm-eval's config dict, its local paths resolved inside its folder.

    ``include: base.yaml`` is merged first (the including file's keys win), as
    lm-eval does; the base must lie in the same folder tree.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise LuminaryError(f"{path}: include: loops back to itself")
    config = _read_yaml(path)
    folder = path.parent
    base = read_task(contained(folder, config.pop("include"), "include"), _seen + (path,)) \
        if "include" in config else {}
    kwargs = dict(config.get("dataset_kwargs") or {})
    if "data_files" in kwargs:
        kwargs["data_files"] = _resolve_files(kwargs["data_files"], folder, "dataset_kwargs.data_files")
        config["dataset_kwargs"] = kwargs
    source = config.get("dataset_path")
    if isinstance(source, str) and source not in LOCAL_BUILDERS and (folder / source).exists():
        config["dataset_path"] = str(contained(folder, source, "dataset_path"))
    return {**base, **config}


def local_tasks(include: list[str | Path]) -> dict[str, tuple[Path, dict]]:
    """Task name -> (its YAML, its config) for every task YAML under the ``include`` folders."""
    tasks: dict[str, tuple[Path, dict]] = {}
    for folder in map(Path, include):
        if not folder.is_dir():
            raise LuminaryError(f"--include: folder '{folder}' not found")
        for path in sorted(folder.rglob("*.yaml")):
            config = read_task(path)
            name = config.get("task")
            if not isinstance(name, str):
                continue  # a base file for include:, or a group
            if name in tasks:
                raise LuminaryError(f"--include: task '{name}' is defined twice ({tasks[name][0]} and {path})")
            tasks[name] = (path, config)
    return tasks


def resolve_tasks(names: list[str], include: list[str | Path]) -> list[dict | str]:
    """Each name as a local config (from ``include``) or as one of lm-eval's own task names."""
    if not names:
        raise LuminaryError("--tasks: name at least one task")
    local = local_tasks(include)
    out: list[dict | str] = []
    unknown = [n for n in names if n not in local]
    if unknown:
        from lm_eval.tasks import TaskManager

        known = set(TaskManager().all_tasks)
        missing = [n for n in unknown if n not in known]
        if missing:
            where = f" in {', '.join(map(str, include))}" if include else " (no --include folder given)"
            raise LuminaryError(f"--tasks: '{missing[0]}' is neither a task{where} nor one of lm-eval's")
    for name in names:
        out.append(local[name][1] if name in local else name)
    return out


def _data_files(config: dict | str) -> dict[str, str]:
    if not isinstance(config, dict):
        return {}
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    flat: list[str] = []
    stack = [files] if files else []
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            flat.append(item)
    return {Path(p).name: sha256_file(p) for p in sorted(flat)}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def evaluate_model(model, tokenizer, tasks: list[dict | str], *, limit: int | float | None = None,
                   batch_size: int = 8, seed: int = 0, num_fewshot: int | None = None,
                   log_samples: bool = False) -> dict[str, Any]:
    """lm-eval's ``simple_evaluate`` on a loaded model; returns a JSON-ready summary.

    ``tasks[name]`` holds ``metrics`` (``acc``, ``acc_norm``, ``byte_perplexity``, ... with lm-eval's
    filter suffix ``,none`` dropped), ``stderr``, ``higher_is_better``, ``samples`` (rows scored),
    ``data_sha256`` and the resolved ``config``.
    """
    lm_eval = require_lm_eval()
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    device = next(model.parameters()).device
    lm = HFLM(pretrained=model.eval(), tokenizer=tokenizer, batch_size=batch_size, device=str(device))
    needs_index = any(isinstance(t, str) for t in tasks)
    raw = lm_eval.simple_evaluate(
        model=lm, tasks=list(tasks), num_fewshot=num_fewshot, limit=limit, log_samples=log_samples,
        task_manager=TaskManager(include_defaults=needs_index), random_seed=seed, numpy_random_seed=seed,
        torch_random_seed=seed, fewshot_random_seed=seed)
    by_name = {(t["task"] if isinstance(t, dict) else t): t for t in tasks}
    summary: dict[str, Any] = {"lm_eval_version": getattr(lm_eval, "__version__", "unknown"), "limit": limit,
                               "seed": seed, "num_fewshot": num_fewshot, "tasks": {}}
    for name, values in raw["results"].items():
        metrics, stderr = {}, {}
        for key, value in values.items():
            if "," not in key:
                continue
            metric, _, filt = key.partition(",")
            if metric.endswith("_stderr"):  # "acc_stderr,none", "exact_match_stderr,strict-match"
                base = metric[: -len("_stderr")]
                stderr[base if filt == "none" else f"{base},{filt}"] = _number(value)
                continue
            label = metric if filt == "none" else f"{metric},{filt}"
            if (number := _number(value)) is not None and math.isfinite(number):
                metrics[label] = number
        summary["tasks"][name] = {
            "metrics": metrics, "stderr": stderr,
            "higher_is_better": raw.get("higher_is_better", {}).get(name, {}),
            "samples": (raw.get("n-samples", {}).get(name) or {}).get("effective"),
            "data_sha256": _data_files(by_name.get(name, name)),
            "config": raw.get("configs", {}).get(name)}
        if log_samples:
            summary["tasks"][name]["per_sample"] = raw.get("samples", {}).get(name)
    return summary


def evaluate_checkpoints(folder: str | Path, tasks: list[dict | str], **kwargs) -> dict[str, Any]:
    """Every checkpoint of a run or release; each task's curve saved as ``analysis/benchmark_TASK.json``.

    The full result of each checkpoint goes to ``analysis/lm_eval/step_STEP.json``.
    """
    from luminary.analysis.over_checkpoints import checkpoints_of, load_checkpoint
    from luminary.core.progress import progress_bar

    folder = Path(folder)
    refs = checkpoints_of(folder)
    results = []
    with progress_bar("evaluate", len(refs)) as bar:
        for ref in refs:
            model, tokenizer = load_checkpoint(ref)
            result = evaluate_model(model, tokenizer, tasks, **kwargs)
            result["checkpoint"], result["step"] = ref.path.name, ref.step
            atomic_write_json(folder / "analysis" / "lm_eval" / f"step_{ref.step:06d}.json", result)
            results.append(result)
            bar.advance()
    curves: dict[str, Any] = {}
    for name in results[0]["tasks"]:
        metrics = {m: [r["tasks"][name]["metrics"].get(m) for r in results]
                   for m in results[0]["tasks"][name]["metrics"]}
        curve = {"task": name, "steps": [r["step"] for r in results],
                 "scores": next(iter(metrics.values()), []), "metrics": metrics,
                 "source": f"lm-eval {results[0]['lm_eval_version']}"}
        atomic_write_json(folder / "analysis" / f"benchmark_{name}.json", curve)
        curves[name] = curve
    return curves
