import json

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.models import build_model, load_model


def test_pickle_weights_are_refused_unless_allowed(tmp_path):
    model = build_model("llama-debug", 60, seed=0).eval()
    model.save_pretrained(tmp_path)
    state = model.state_dict()
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(LuminaryError, match="pickle weights are refused"):
        load_model(tmp_path)
    loaded = load_model(tmp_path, allow_pickle=True)
    ids = torch.randint(0, 60, (1, 6))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_a_pickle_that_is_not_plain_tensors_is_refused(tmp_path):
    model = build_model("llama-debug", 60, seed=0)
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(LuminaryError, match="weights_only"):
        load_model(tmp_path, allow_pickle=True)


def test_remote_code_is_never_trusted(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "somebody_else", "auto_map": {"AutoConfig": "x.Y"}}))
    with pytest.raises(LuminaryError, match="remote code"):
        load_model(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(LuminaryError, match="not found"):
        load_model(tmp_path / "nothing")


def test_a_truncated_safetensors_file_is_named(tmp_path, cli):
    build_model("llama-debug", 60, seed=0).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # an interrupted copy
    cli("generate", tmp_path, "--prompt", "x").one_line_error(str(weights), "not a readable safetensors file")


@pytest.mark.parametrize("name", ["llama-debug", "crystal-debug"])
def test_weights_of_the_wrong_shape_name_the_tensor(tmp_path, cli, name):
    build_model(name, 60, seed=0).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] *= 2
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = cli("generate", tmp_path, "--prompt", "x")
    result.one_line_error("model.safetensors", "mlp", "has shape", "but config.json makes it")
