"""Model families (llama from transformers, crystal of luminary's own), tiny presets, safe loading."""

from luminary.models.loading import load_model, load_tokenizer
from luminary.models.presets import PRESETS, build_config, build_model

__all__ = ["PRESETS", "build_config", "build_model", "load_model", "load_tokenizer"]
