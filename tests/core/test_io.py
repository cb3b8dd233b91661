import numpy as np
import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.core.io import (
    atomic_dir,
    atomic_write_text,
    load_state,
    read_jsonl,
    save_state,
    verify_manifest,
    write_manifest,
)
from luminary.core.seed import rng_state, set_rng_state


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("partial")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("whole")
    assert (target / "a.txt").read_text() == "whole"


def test_atomic_dir_keeps_existing_on_failure(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(LuminaryError, match="already exists"):
        with atomic_dir(target):
            pass
    with pytest.raises(ValueError):
        with atomic_dir(target, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise ValueError
    assert (target / "old.txt").read_text() == "old"


def test_manifest_catches_one_changed_byte(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "sub" / "b.txt").write_text("hello")
    write_manifest(tmp_path)
    assert verify_manifest(tmp_path) == []
    data = bytearray((tmp_path / "a.bin").read_bytes())
    data[1234] ^= 1
    (tmp_path / "a.bin").write_bytes(bytes(data))
    (tmp_path / "sub" / "b.txt").unlink()
    (tmp_path / "extra.txt").write_text("x")
    problems = verify_manifest(tmp_path)
    assert any(p.startswith("a.bin:") and "differs" in p for p in problems)
    assert any(p.startswith("sub/b.txt:") and "missing" in p for p in problems)
    assert any(p.startswith("extra.txt:") for p in problems)


def test_state_round_trip_without_pickle(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": rng_state(), "arr": np.arange(5), "nan": float("nan")}
    save_state(tmp_path, "s", state)
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))
    back = load_state(tmp_path, "s")
    opt2 = torch.optim.AdamW(model.parameters(), lr=0.1)
    opt2.load_state_dict(back["optimizer"])
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(v, opt2.state_dict()["state"][0][k])
    assert np.array_equal(back["arr"], np.arange(5)) and back["nan"] != back["nan"]
    torch.manual_seed(5)
    np.random.seed(5)
    saved = rng_state()
    save_state(tmp_path, "rng", saved)
    expected = (torch.rand(3), np.random.rand(3))
    set_rng_state(load_state(tmp_path, "rng"))
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])


def test_read_jsonl_names_line_and_field(tmp_path):
    p = tmp_path / "d.jsonl"
    atomic_write_text(p, '{"a": 1}\n\n{"b": 2}\n')
    with pytest.raises(LuminaryError, match=r"d.jsonl: line 3: missing field 'a'"):
        read_jsonl(p, required=("a",))
    atomic_write_text(p, '{"a": 1}\nnot json\n')
    with pytest.raises(LuminaryError, match="line 2, column 1: not valid JSON"):
        read_jsonl(p)
