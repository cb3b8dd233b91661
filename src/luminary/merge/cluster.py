"""Mergeability: which models of a zoo can be merged with each other (Model-GLUE §3).

Models are grouped by equal ``config.architectures``. Within a group, each
model is compared with the first member of every family found so far and
joins the first family whose similarity exceeds the threshold (0.95); else it
starts a family. Similarity of two models: for every tensor whose name contains
``self_attn`` or ``mlp``, the cosine along dim 0 (one per column),

    cos_j = ⟨W[:, j], V[:, j]⟩ / (‖W[:, j]‖ ‖V[:, j]‖),

averaged over columns; ``sim_all`` averages these over attention and MLP
tensors, ``sim_mlp`` over MLP tensors only. With a base model the cosines are
taken between task vectors W − W_base. Tensors are read one name at a time
for all models, so memory holds one tensor per model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir
from luminary.core.locks import locked
from luminary.core.progress import progress_bar
from luminary.merge.zoo import ModelFolder

MEASURES = ("sim_all", "sim_mlp")


def column_cosine(w: torch.Tensor, v: torch.Tensor) -> float:
    """Mean over columns of the cosine along dim 0 (a vector is one column)."""
    w, v = w.float(), v.float()
    if w.dim() == 1:
        w, v = w[:, None], v[:, None]
    w, v = w.reshape(w.shape[0], -1), v.reshape(v.shape[0], -1)
    return torch.nn.functional.cosine_similarity(w, v, dim=0, eps=1e-12).mean().item()


def similarity_matrix(models: list[ModelFolder], base: ModelFolder | None = None,
                      measure: str = "sim_all") -> torch.Tensor:
    """Pairwise similarity (NaN between models of different architectures or shapes)."""
    if measure not in MEASURES:
        raise LuminaryError(f"measure: expected one of {', '.join(MEASURES)}, got '{measure}'")
    n = len(models)
    total, count = torch.zeros(n, n, dtype=torch.float64), torch.zeros(n, n)
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(models):
        groups.setdefault(m.architecture, []).append(i)
    keys = ("mlp",) if measure == "sim_mlp" else ("self_attn", "mlp")
    for members in groups.values():
        names = [x for x in models[members[0]].tensors.names() if any(k in x for k in keys)]
        if not names:
            raise LuminaryError(f"{models[members[0]].path}: no tensor names contain 'self_attn' or 'mlp'")
        with progress_bar("similarity", len(names)) as bar:
            for name in names:
                tensors = {}
                for i in members:
                    if name in models[i].tensors:
                        tensors[i] = models[i].tensors.get(name).float()
                if base is not None and name in base.tensors:
                    ref = base.tensors.get(name).float()
                    tensors = {i: t - ref for i, t in tensors.items() if t.shape == ref.shape}
                for a in tensors:
                    for b in tensors:
                        if a < b and tensors[a].shape == tensors[b].shape:
                            total[a, b] += column_cosine(tensors[a], tensors[b])
                            count[a, b] += 1
                bar.advance(1)
        for a in members:
            for b in members:
                if a < b and count[a, b] < len(names):
                    count[a, b] = 0  # a shape or tensor differs: not mergeable
    sim = torch.full((n, n), float("nan"), dtype=torch.float64)
    for a in range(n):
        sim[a, a] = 1.0
        for b in range(a + 1, n):
            if count[a, b] > 0:
                sim[a, b] = sim[b, a] = total[a, b] / count[a, b]
    return sim


def families(architectures: list[tuple], sim: torch.Tensor, threshold: float) -> list[list[int]]:
    """Greedy families: join the first family whose first member is more similar than ``threshold``."""
    found: list[list[int]] = []
    for i, arch in enumerate(architectures):
        for family in found:
            head = family[0]
            if architectures[head] == arch and not torch.isnan(sim[i, head]) and sim[i, head] > threshold:
                family.append(i)
                break
        else:
            found.append([i])
    return found


def plot_heatmap(sim: torch.Tensor, labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    fig, ax = plt.subplots(figsize=(2 + 0.6 * n, 1.5 + 0.6 * n))
    image = ax.imshow(sim.numpy(), cmap="viridis", vmin=min(0.0, float(torch.nan_to_num(sim, 1.0).min())), vmax=1.0)
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    for a in range(n):
        for b in range(n):
            value = sim[a, b].item()
            ax.text(b, a, "—" if value != value else f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value == value and value < 0.9 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title("weight similarity (cosine per column)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cluster_models(paths: list[str], threshold: float = 0.95, base: str | Path | None = None,
                   measure: str = "sim_all") -> dict:
    """Families of mergeable models and the similarity matrix, as plain data."""
    if len(set(paths)) != len(paths):
        raise LuminaryError("models: a model is listed twice")
    models = [ModelFolder.open(p) for p in paths]
    base_model = ModelFolder.open(base) if base else None
    try:
        sim = similarity_matrix(models, base_model, measure)
        found = families([m.architecture for m in models], sim, threshold)
    finally:
        for m in models + ([base_model] if base_model else []):
            m.close()
    return {"models": paths, "threshold": threshold, "measure": measure, "task_vectors_of": str(base) if base else None,
            "families": [[paths[i] for i in f] for f in found],
            "similarity": [[None if v != v else round(v, 6) for v in row] for row in sim.tolist()]}


def cluster_zoo(paths: list[str], out: str | Path, threshold: float = 0.95, base: str | Path | None = None,
                measure: str = "sim_all", overwrite: bool = False) -> dict:
    """``clusters.json`` and ``similarity.png`` in the folder ``out``."""
    result = cluster_models(paths, threshold, base, measure)
    with locked(out, "cluster output"), atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "clusters.json").write_text(json.dumps(result, indent=2) + "\n")
        sim = torch.tensor([[float("nan") if v is None else v for v in row] for row in result["similarity"]])
        plot_heatmap(sim, [Path(p).name for p in paths], tmp / "similarity.png")
    return result
