"""``luminary activity`` on a fresh Typer app: synth, run, export; every activity example loads."""

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from luminary.activity.run import ActivityRunConfig
from luminary.cli.activity import register
from luminary.core.config import load_config
from luminary.core.errors import LuminaryError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    register(app)
    return app


def test_synth_run_export(app, tmp_path):
    runner = CliRunner()
    data = tmp_path / "aric"
    result = runner.invoke(app, ["activity", "synth", "--out", str(data), "--scale", "0.0005", "--seed", "1",
                                 "--min-per-class", "6", "--audio-seconds", "0.1", "--format", "safetensors"])
    assert result.exit_code == 0, result.output
    assert "instances" in result.output and next((data / "image_features" / "vit").glob("*.safetensors"))
    config = tmp_path / "run.yaml"
    config.write_text(f"data: {data}\nprotocol: {{kind: class_incremental, class_order: seeded, steps: [16, 16]}}\n"
                      "methods:\n  - {method: finetune, epochs: 2, min_steps: 5, hidden: 16}\n"
                      "  - {method: icarl, epochs: 2, min_steps: 5, hidden: 16, memory_size: 64}\n"
                      "deploy: {device: cpu}\n")
    result = runner.invoke(app, ["activity", "run", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "avg inc acc" in result.output and "icarl" in result.output
    assert (tmp_path / "out" / "confusion_icarl.png").is_file()
    result = runner.invoke(app, ["activity", "export", "--out", str(tmp_path / "export"), "--config", str(config)])
    assert result.exit_code == 0 and (tmp_path / "export" / "pycil_aric.json").is_file()
    # the same folder again: refused, nothing damaged
    result = runner.invoke(app, ["activity", "run", str(config), "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, LuminaryError) and "already exists" in str(result.exception)


def test_bad_config_is_one_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("data: x\nmethods:\n  - {method: finetune, epoch: 3}\n")
    with pytest.raises(LuminaryError, match=r"methods\[0\].epoch: unknown key; did you mean 'epochs'\?"):
        load_config(config, ActivityRunConfig)
    config.write_text("data: x\nmethods:\n  - {method: ewc}\n")
    with pytest.raises(LuminaryError, match="unknown method 'ewc'"):
        load_config(config, ActivityRunConfig)


@pytest.mark.parametrize("name", ["activity-cil.yaml", "activity-fscil.yaml", "activity-balanced.yaml",
                                  "activity-fusion.yaml", "activity-fusion-late.yaml"])
def test_examples_load(name):
    config = load_config(EXAMPLES / name, ActivityRunConfig)
    assert config.data == "data/aric-synth" and config.methods


def test_bad_input_through_luminary_is_one_line_exit_2(aric, tmp_path, cli):
    """The installed command line: a missing modality folder, an index line naming no sample,
    a class order that repeats a class."""
    import shutil

    import yaml

    root = tmp_path / "aric"
    shutil.copytree(aric, root)
    shutil.rmtree(root / "image_features" / "clipvit")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data": str(root), "methods": [{"method": "finetune"}]}))
    cli("activity", "run", config, "--out", tmp_path / "out").one_line_error("image_features/clipvit")
    shutil.copytree(aric / "image_features" / "clipvit", root / "image_features" / "clipvit")
    index = root / "index" / "test" / "test_1.txt"
    index.write_text(index.read_text() + "99999 0 reading\n")
    cli("activity", "run", config, "--out", tmp_path / "out").one_line_error("names sample 99999")
    shutil.copy2(aric / "index" / "test" / "test_1.txt", index)
    from luminary.activity.layout import CLASSES

    config.write_text(yaml.safe_dump({"data": str(root), "methods": [{"method": "finetune"}],
                                      "protocol": {"class_order": [CLASSES[0]] * 32}}))
    result = cli("activity", "run", config, "--out", tmp_path / "out")
    result.one_line_error()
    assert CLASSES[0] in result.stderr and not (tmp_path / "out").exists()
