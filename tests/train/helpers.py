"""Shared by the trainer's tests."""

from pathlib import Path

import yaml

from luminary.core.runs import read_metrics


def pretrain_with(release_recipe: Path, tmp_path: Path, **deploy) -> list[dict]:
    """The session's release recipe with extra ``deploy:`` settings, pretrained; its metrics rows."""
    from luminary.pretrain.runner import pretrain

    recipe = yaml.safe_load(release_recipe.read_text())
    recipe["deploy"].update(deploy)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return read_metrics(pretrain(path, tmp_path / "run").run_dir / "metrics.jsonl")
