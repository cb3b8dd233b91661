"""The Hub model card (``README.md``) of every folder luminary's merge tools write.

YAML front matter as the Hub reads it (``huggingface_hub.ModelCard``):
``base_model`` (the input models, as the config names them), ``library_name``,
``tags`` (``mergekit`` and ``merge``, the tags mergekit writes, plus
``luminary`` and one per kind of output) and ``license`` when every input's own
card declares one and they all agree. The body names the method with a link to
its paper (or page), the models, and the config as it was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import yaml

TAGS = ("mergekit", "merge", "luminary")

# method -> (name, reference): the paper that introduced it, or the page that describes it
METHODS: dict[str, tuple[str, str | None]] = {
    "linear": ("Linear (model soups)", "https://arxiv.org/abs/2203.05482"),
    "task_arithmetic": ("Task Arithmetic", "https://arxiv.org/abs/2212.04089"),
    "ties": ("TIES", "https://arxiv.org/abs/2306.01708"),
    "dare_ties": ("DARE with TIES", "https://arxiv.org/abs/2311.03099"),
    "dare_linear": ("DARE (linear)", "https://arxiv.org/abs/2311.03099"),
    "breadcrumbs": ("Model Breadcrumbs", "https://arxiv.org/abs/2312.06795"),
    "breadcrumbs_ties": ("Model Breadcrumbs with TIES", "https://arxiv.org/abs/2312.06795"),
    "della": ("DELLA", "https://arxiv.org/abs/2406.11617"),
    "della_linear": ("DELLA (linear)", "https://arxiv.org/abs/2406.11617"),
    "sce": ("SCE", "https://arxiv.org/abs/2408.07990"),
    "model_stock": ("Model Stock", "https://arxiv.org/abs/2403.19522"),
    "slerp": ("SLERP", "https://en.wikipedia.org/wiki/Slerp"),
    "nuslerp": ("NuSLERP", None),
    "multislerp": ("Multi-SLERP", "https://goddard.blog/posts/multislerp-wow-what-a-cool-idea"),
    "karcher": ("Karcher mean", "https://arxiv.org/abs/2603.04972"),
    "nearswap": ("NearSwap", "https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001"),
    "arcee_fusion": ("Arcee Fusion", "https://arcee.ai"),
    "ram": ("Reinforced Agent Merging", "https://arxiv.org/abs/2601.13572"),
    "ramplus_tl": ("Reinforced Agent Merging Plus (tensor-local)", "https://arxiv.org/abs/2601.13572"),
    "passthrough": ("Passthrough", None),
    # luminary's other outputs
    "stack": ("layer stacking (depth up-scaling)", "https://arxiv.org/abs/2312.15166"),
    "interleave": ("layer interleaving (depth up-scaling)", "https://arxiv.org/abs/2312.15166"),
    "moe_ffn": ("mixture of experts, FFN level (Mixtral)", "https://arxiv.org/abs/2401.04088"),
    "moe_block": ("mixture of experts, block level (Model-GLUE)", "https://arxiv.org/abs/2410.05357"),
    "moe_model": ("mixture of experts, model level (Model-GLUE)", "https://arxiv.org/abs/2410.05357"),
    "glue": ("Model-GLUE", "https://arxiv.org/abs/2410.05357"),
}


def method_link(method: str) -> str:
    name, url = METHODS.get(method, (method, None))
    return f"[{name}]({url})" if url else name


def front_matter(text: str) -> dict:
    """The YAML front matter of a card's text (empty when there is none or it does not parse)."""
    if not text.startswith("---"):
        return {}
    lines = text.splitlines()
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            try:
                data = yaml.safe_load("\n".join(lines[1:i]))
            except yaml.YAMLError:
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def card_license(folder: str | Path) -> str | None:
    path = Path(folder) / "README.md"
    if not path.is_file():
        return None
    value = front_matter(path.read_text(encoding="utf-8", errors="replace")).get("license")
    return str(value) if isinstance(value, (str, int, float)) and str(value).strip() else None


def common_license(folders: Iterable[str | Path]) -> str | None:
    """The license every input's card declares, when they all declare the same one."""
    found = {card_license(f) for f in folders}
    return found.pop() if len(found) == 1 and None not in found else None


def as_given(config, config_text: str | None):
    """(the config as the user wrote it, its YAML text) for a card: models named as in the file, not as
    resolved. Without the text, the config's own YAML; a text that no longer validates: the config."""
    if config_text is None:
        return config, yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
    try:
        return type(config).model_validate(yaml.safe_load(config_text)), config_text
    except (yaml.YAMLError, ValueError):  # the text was already read into ``config``; names as resolved will do
        return config, config_text


def model_card(name: str, method: str, models: Sequence[str], config_text: str, folders: Iterable[str | Path] = (),
               base_model: str | None = None, extra_tags: Sequence[str] = (), kind: str = "merge") -> str:
    """The card's text. ``models``: the inputs as the config names them (``base_model`` among them or
    not); ``folders``: where they are, for their licenses; ``config_text``: the config as given."""
    models = list(dict.fromkeys(([base_model] if base_model else []) + list(models)))
    meta: dict = {"base_model": models, "library_name": "transformers",
                  "tags": list(dict.fromkeys([*TAGS, *extra_tags]))}
    license_ = common_license(folders)
    if license_:
        meta["license"] = license_
    based = f", with `{base_model}` as the base" if base_model else ""
    others = [m for m in models if m != base_model] or models
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---",
        f"# {name}", "",
        f"This {kind} of pre-trained language models was made with luminary "
        "(`luminary.merge`, which reads [mergekit](https://github.com/arcee-ai/mergekit)'s "
        "configurations).", "",
        "## Merge details", "", "### Method", "",
        f"This model was made with the {method_link(method)} method{based}.", "",
        "### Models", "", "The following models were included:", "",
        *[f"* `{m}`" for m in others], "",
        "### Configuration", "", "The configuration that produced this model, as given:", "",
        "```yaml", config_text.rstrip("\n"), "```", "",
    ]
    return "\n".join(lines)
