from typing import Literal

import pytest
from pydantic import Field

from luminary.core.config import Config, load_config
from luminary.core.errors import LuminaryError


class Inner(Config):
    steps: int = Field(10, ge=0)
    depth: int = Field(1, ge=0)


class Outer(Config):
    name: str
    inner: Inner = Inner()
    peak: float | Literal["continue"] = 1.0


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_valid_config_fills_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "name: a\n"), Outer)
    assert cfg.inner.steps == 10


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: a\ninner: {stepz: 3}\n", "inner.stepz: unknown key"),
        ("name: a\ninner: {steps: many}\n", "inner.steps: "),
        ("name: a\ninner: {steps: -1}\n", "inner.steps: Input should be greater than or equal to 0"),
        ("inner: {steps: 1}\n", "name: required field is missing"),
        ("name: a\npeak: contnue\n", "peak: should be a valid number or 'continue' (got 'contnue')"),
        ("name: a\npeak: contnue\ninner: {stepz: 1}\n", "(and 1 more problem)"),
        ("name: a\ninner: {steps: -1, depth: -1}\n", "inner.steps: Input should be greater than or equal to 0 (got -1) (and 1 more problem)"),
    ],
)
def test_errors_name_file_and_field(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(LuminaryError) as info:
        load_config(path, Outer)
    message = str(info.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(LuminaryError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", Outer)
    with pytest.raises(LuminaryError, match="line 2"):
        load_config(write(tmp_path, "name: a\n  bad: [\n"), Outer)
