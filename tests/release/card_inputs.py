"""A recipe, its lock and one checkpoint entry, as small as a release card needs (no training)."""

from luminary.pretrain.recipe import Recipe


def card_inputs(hub_dataset: str | None = None):
    """(recipe, lock, entries) for ``luminary.release.card.model_card``; ``hub_dataset``: the web source's Hub id."""
    web = {"type": "jsonl", "path": "x.jsonl", **({"hub_dataset": hub_dataset} if hub_dataset else {})}
    recipe = Recipe.model_validate({
        "name": "tiny", "sources": {"web": web, "code": {"type": "files", "path": "src", "kind": "code"}},
        "tokenizer": {"path": "tok"}, "model": {"preset": "crystal-debug"},
        "train": {"global_batch": 4, "micro_batch": 4, "seq_len": 48},
        "phases": [{"name": "p1", "steps": 2, "weights": {"web": 0.5, "code": 0.5},
                    "schedule": {"kind": "linear", "peak_lr": 0.003, "warmup_steps": 1, "decay_steps": 2}}]})
    lock = {"sources": {"web": {"type": "jsonl", "documents": 3, "tokens": 100, "sha256": "0" * 64},
                        "code": {"type": "files", "documents": 2, "tokens": 50, "sha256": "1" * 64}},
            "phases": [{"name": "p1", "steps": 2, "weights": {"web": 0.5, "code": 0.5},
                        "fim": {"rate": 0.0, "spm": 0.5, "sources": {"web": 0.0, "code": 0.0}, "truncate": "chunk"},
                        "schedule": {"peak_lr": 0.003}}],
            "total_steps": 2, "global_batch": 4, "seq_len": 48}
    entries = [{"checkpoint": "checkpoints/step000002-tokens384", "step": 2, "phase": "p1", "loss": 4.0,
                "val_loss": {"web": 3.25, "code": 2.5}, "chunk": "chunks/train_000.jsonl"}]
    return recipe, lock, entries
