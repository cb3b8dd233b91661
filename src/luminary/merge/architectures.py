"""The modules of multi-module architectures: which tensors a config's ``modules.NAME`` merges.

mergekit splits a vision-language (or encoder-decoder) model into named
modules, each with its own tensors before the layers, its numbered layers and
its tensors after them, and merges each module as its own ``models`` or
``slices`` say (mergekit ``architecture/base.py``, ``_data/architectures/*.json``).
An architecture not listed here has one module, ``default``: every tensor, the
layers found by name (``luminary.merge.zoo``).

A layout names the exact tensors before and after the layers and the layer
template (``{i}`` stands for the layer index); every tensor that starts with a
layer's template is in that layer. A template without ``{i}`` with a fixed
``count`` is mergekit's projector: the same tensors in each of ``count`` layers,
so the last layer's (t = 1) parameters give the output, as in mergekit. The
number of layers is counted from the tensors; ``layers_key`` is the config key
that gets the merged module's layer count.

The names are those of checkpoints written by transformers (``save_pretrained``).
Two differences from mergekit 0.1.5's tables, where they name tensors or keys
that transformers does not write: Qwen2-VL's text layers are counted under
``text_config.num_hidden_layers`` (mergekit reads a top-level
``num_hidden_layers`` that transformers 5 configs lack, and fails), and
Whisper's decoder tensors are under ``model.decoder.`` (mergekit's prefix lacks
the dot and finds none).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModuleLayout:
    pre: tuple[str, ...]  # tensors before the layers (absent ones are skipped: a tied lm_head)
    layer: str | None  # "visual.blocks.{i}."; None: no layers
    post: tuple[str, ...] = ()
    layers_key: str | None = None  # dotted config key of the layer count
    count: int | None = None  # a fixed number of layers, for a template without {i}


def _decoder(prefix: str, key: str, head: str = "lm_head.weight") -> ModuleLayout:
    """A text decoder: embeddings, ``layers.{i}``, final norm and (unless tied) the head."""
    return ModuleLayout((f"{prefix}embed_tokens.weight",), f"{prefix}layers.{{i}}.",
                        (f"{prefix}norm.weight", head), layers_key=key)


_QWEN2_VL = {
    "text_decoder": _decoder("model.", "text_config.num_hidden_layers"),
    "multi_modal_projector": ModuleLayout(("visual.merger.ln_q.weight", "visual.merger.ln_q.bias"),
                                          "visual.merger.mlp.", count=2),
    "vision_tower": ModuleLayout(("visual.patch_embed.proj.weight",), "visual.blocks.{i}.",
                                 layers_key="vision_config.depth"),
}
_QWEN3_VL = {
    "text_decoder": _decoder("model.language_model.", "text_config.num_hidden_layers"),
    "multi_modal_projector": ModuleLayout(tuple(f"model.visual.merger.{p}.{w}" for p in ("norm", "linear_fc1", "linear_fc2")
                                                for w in ("weight", "bias")),
                                          "model.visual.deepstack_merger_list.{i}."),
    "vision_tower": ModuleLayout(("model.visual.patch_embed.proj.weight", "model.visual.patch_embed.proj.bias",
                                  "model.visual.pos_embed.weight"), "model.visual.blocks.{i}.",
                                 layers_key="vision_config.depth"),
}


def _llava_like(vision: str, vision_pre: tuple[str, ...], vision_layer: str, vision_post: tuple[str, ...],
                projector: tuple[str, ...], vision_name: str = "vision_tower") -> dict[str, ModuleLayout]:
    """Gemma 3, Mistral 3, Llama 4: ``language_model.``, ``multi_modal_projector.`` and a vision model."""
    return {
        "text_decoder": _decoder("language_model.model.", "text_config.num_hidden_layers",
                                 head="language_model.lm_head.weight"),
        "multi_modal_projector": ModuleLayout(tuple(f"multi_modal_projector.{n}" for n in projector), None),
        vision_name: ModuleLayout(tuple(vision + n for n in vision_pre), vision + vision_layer,
                                  tuple(vision + n for n in vision_post), layers_key="vision_config.num_hidden_layers"),
    }


def _seq2seq_half(prefix: str, pre: tuple[str, ...], layer: str, key: str) -> ModuleLayout:
    return ModuleLayout(tuple(prefix + n for n in pre), prefix + layer,
                        (prefix + "layer_norm.bias", prefix + "layer_norm.weight"), layers_key=key)


LAYOUTS: dict[str, dict[str, ModuleLayout]] = {
    "Qwen2VLForConditionalGeneration": _QWEN2_VL,
    "Qwen2_5_VLForConditionalGeneration": {**_QWEN2_VL, "multi_modal_projector": ModuleLayout(
        ("visual.merger.ln_q.weight",), "visual.merger.mlp.", count=2)},
    "Qwen3VLForConditionalGeneration": _QWEN3_VL,
    "Qwen3VLMoeForConditionalGeneration": _QWEN3_VL,
    "Gemma3ForConditionalGeneration": _llava_like(
        "vision_tower.vision_model.", ("embeddings.patch_embedding.bias", "embeddings.patch_embedding.weight",
                                       "embeddings.position_embedding.weight"),
        "encoder.layers.{i}.", ("post_layernorm.bias", "post_layernorm.weight"),
        ("mm_input_projection_weight", "mm_soft_emb_norm.weight")),
    "Mistral3ForConditionalGeneration": _llava_like(
        "vision_tower.", ("patch_conv.weight", "ln_pre.weight"), "transformer.layers.{i}.", (),
        ("linear_1.weight", "linear_2.weight", "norm.weight", "patch_merger.merging_layer.weight")),
    "Llama4ForConditionalGeneration": _llava_like(
        "vision_model.", ("class_embedding", "patch_embedding.linear.weight", "positional_embedding_vlm",
                          "layernorm_pre.bias", "layernorm_pre.weight"), "model.layers.{i}.",
        ("layernorm_post.weight", "layernorm_post.bias", "vision_adapter.mlp.fc1.weight",
         "vision_adapter.mlp.fc2.weight"), ("linear_1.weight",), vision_name="vision_model"),
    "T5ForConditionalGeneration": {
        "decoder": ModuleLayout(("decoder.embed_tokens.weight",), "decoder.block.{i}.",
                                ("decoder.final_layer_norm.weight",), layers_key="num_decoder_layers"),
        "encoder": ModuleLayout(("encoder.embed_tokens.weight",), "encoder.block.{i}.",
                                ("encoder.final_layer_norm.weight",), layers_key="num_layers"),
        "shared": ModuleLayout(("shared.weight",), None, ("lm_head.weight",)),
    },
    "WhisperForConditionalGeneration": {
        "decoder": _seq2seq_half("model.decoder.", ("embed_tokens.weight", "embed_positions.weight"),
                                 "layers.{i}.", "decoder_layers"),
        "encoder": _seq2seq_half("model.encoder.", ("embed_positions.weight", "conv1.bias", "conv1.weight",
                                                    "conv2.bias", "conv2.weight"), "layers.{i}.", "encoder_layers"),
    },
}


def module_layouts(architecture: tuple) -> dict[str, ModuleLayout] | None:
    """The modules of ``architecture`` (a config's ``architectures``), or None for one ``default`` module."""
    return LAYOUTS.get(architecture[0]) if architecture else None
