"""The split as Avalanche nc_benchmark arguments and as a PyCIL config."""

import json

from luminary.activity.export import avalanche_arguments, export_split, pycil_config
from luminary.activity.layout import CLASSES
from luminary.activity.protocols import ProtocolConfig, class_order


def _avalanche_steps(args, n_classes=32):
    """Classes per experience as Avalanche's nc_benchmark assigns them (named ones, the rest evenly)."""
    named = {int(k): v for k, v in args["per_exp_classes"].items()}
    rest = n_classes - sum(named.values())
    others = args["n_experiences"] - len(named)
    return [named.get(i, rest // others if others else 0) for i in range(args["n_experiences"])]


def test_avalanche_expresses_arics_steps(tmp_path):
    args = avalanche_arguments(ProtocolConfig())
    assert args["n_experiences"] == 7 and args["per_exp_classes"] == {0: 8} and args["task_labels"] is False
    assert _avalanche_steps(args) == [8, 4, 4, 4, 4, 4, 4]
    assert args["fixed_class_order"] == list(range(32)) and args["class_names"] == list(CLASSES)
    uneven = avalanche_arguments(ProtocolConfig(steps=[8, 8, 4, 4, 4, 4]))
    assert _avalanche_steps(uneven) == [8, 8, 4, 4, 4, 4]


def test_pycil_config_and_files(tmp_path):
    protocol = ProtocolConfig(class_order="seeded", order_seed=7)
    cfg = pycil_config(protocol)
    assert (cfg["init_cls"], cfg["increment"], cfg["memory_size"], cfg["shuffle"]) == (8, 4, 2000, False)
    order = class_order("seeded", 7)
    assert cfg["class_order"] == order and cfg["label_map"][CLASSES[order[0]]] == 0
    paths = export_split(protocol, tmp_path / "export")
    loaded = json.loads(paths[0].read_text())
    assert loaded["per_exp_classes"] == {"0": 8} and loaded["fixed_class_order"] == order
    assert json.loads(paths[1].read_text())["model_name"] == "icarl"
