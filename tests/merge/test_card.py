"""The Hub model card (README.md) of every output: merges, mixtures, stacks and the Model-GLUE recipe."""

import shutil
import textwrap

import pytest
import yaml
from huggingface_hub import ModelCard

from luminary.core.io import MANIFEST, verify_manifest
from luminary.merge.card import METHODS, common_license, front_matter, model_card
from luminary.merge.glue import GlueRecipe, run_glue
from luminary.merge.methods import METHODS as REGISTERED
from luminary.merge.mixture import MixtureConfig, run_mixture
from luminary.merge.stack import run_stack


def license_card(folder, license_):
    (folder / "README.md").write_text(f"---\nlicense: {license_}\ntags: [x]\n---\n# a model\n")


def check(folder, models, *tags):
    """The card parses as the Hub parses it, names ``models``, carries the tags, is in the manifest."""
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == models
    assert card.data.library_name == "transformers"
    assert {"mergekit", "merge", "luminary", *tags} <= set(card.data.tags)
    assert "README.md" in (folder / MANIFEST).read_text() and verify_manifest(folder) == []
    return card


def test_merge_card(tmp_path, zoo, cli):
    for name in ("base", "a", "b"):
        license_card(zoo[name], "apache-2.0")
    text = textwrap.dedent("""\
        # names as given: relative to this file
        merge_method: ties
        base_model: base
        models:
          - model: a
            parameters: {weight: 0.6, density: 0.5}
          - model: b
            parameters: {weight: 0.4, density: 0.5}
        dtype: float32
        """)
    (tmp_path / "ties.yaml").write_text(text)
    res = cli("merge", tmp_path / "ties.yaml", "--out", tmp_path / "merged")
    assert res.returncode == 0, res.stderr
    card = check(tmp_path / "merged", ["base", "a", "b"])
    assert card.data.license == "apache-2.0"
    assert "[TIES](https://arxiv.org/abs/2306.01708)" in card.text and "`base` as the base" in card.text
    assert "* `a`\n* `b`" in card.text and f"```yaml\n{text}```" in card.text
    assert card.text.startswith("# merged")

    # licenses that disagree (or one missing) give none
    license_card(zoo["b"], "mit")
    assert cli("merge", tmp_path / "ties.yaml", "--out", tmp_path / "mixed").returncode == 0
    assert ModelCard.load(tmp_path / "mixed" / "README.md").data.license is None
    (zoo["b"] / "README.md").unlink()
    assert common_license([zoo["base"], zoo["a"], zoo["b"]]) is None
    assert common_license([zoo["base"], zoo["a"]]) == "apache-2.0"


def test_every_method_has_a_card_entry():
    assert set(REGISTERED) <= set(METHODS)
    text = model_card("m", "sce", ["x/y", "z"], "merge_method: sce\n", base_model="x/y")
    data = ModelCard(text).data
    assert data.base_model == ["x/y", "z"] and "license" not in data.to_dict()
    assert front_matter(text)["tags"][:3] == ["mergekit", "merge", "luminary"]
    assert front_matter("no front matter") == {} and front_matter("---\n[unclosed\n---\n") == {}


def test_stack_card(tmp_path, zoo):
    run_stack([str(zoo["a"]), str(zoo["b"])], tmp_path / "deep", mode="interleave")
    card = check(tmp_path / "deep", [str(zoo["a"]), str(zoo["b"])], "stack")
    assert "interleaving" in card.text and "https://arxiv.org/abs/2312.15166" in card.text
    assert yaml.safe_load(card.text.split("```yaml\n")[1].split("```")[0])["mode"] == "interleave"
    run_stack([str(zoo["a"]), str(zoo["b"])], tmp_path / "plain", write_card=False)
    assert not (tmp_path / "plain" / "README.md").exists()


@pytest.mark.parametrize("level", ["ffn", "model"])
def test_mixture_card(tmp_path, zoo, level, cli):
    for name in ("base", "a", "b"):
        license_card(zoo[name], "mit")
    text = f"level: {level}\nbase_model: base\ngate_mode: random\nexperts:\n  - model: a\n  - model: b\n"
    (tmp_path / "moe.yaml").write_text(text)
    res = cli("moe", tmp_path / "moe.yaml", "--out", tmp_path / "moe")
    assert res.returncode == 0, res.stderr
    card = check(tmp_path / "moe", ["base", "a", "b"], "moe")
    assert card.data.license == "mit" and text in card.text
    assert ("Mixtral" if level == "ffn" else "Model-GLUE") in card.text
    # without the file's text, the names come from the config
    config = MixtureConfig(level=level, base_model=str(zoo["base"]), gate_mode="random",
                           experts=[{"model": str(zoo["a"])}, {"model": str(zoo["b"])}])
    run_mixture(config, tmp_path / "api")
    check(tmp_path / "api", [str(zoo["base"]), str(zoo["a"]), str(zoo["b"])], "moe")


def test_glue_card(tmp_path, zoo):
    models = [str(zoo["a"]), str(zoo["b"])]
    recipe = GlueRecipe(models=models, threshold=-1.0, strategies=["linear"], mixture={"enabled": False})
    run_glue(recipe, tmp_path / "glue", evaluate=lambda folder: float("try-" in str(folder)))  # the merge wins
    card = check(tmp_path / "glue", models, "model-glue")
    assert "Model-GLUE" in card.text and "https://arxiv.org/abs/2410.05357" in card.text
    family = tmp_path / "glue" / "family-0"
    assert verify_manifest(family) == []
    manifest = (tmp_path / "glue" / MANIFEST).read_text()
    assert "family-0/model.safetensors" in manifest and "report.md" in manifest
    shutil.rmtree(tmp_path / "glue")
