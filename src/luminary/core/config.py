"""YAML configs mapped onto pydantic models.

A config class derives from :class:`Config`: unknown keys are errors (a typo
must not silently become a default), and the class is the one place where a
default lives. :func:`load_config` turns a validation failure into a
:class:`LuminaryError` that names the file and the dotted field.
"""

from __future__ import annotations

import types
import typing
from difflib import get_close_matches
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from luminary.core.errors import LuminaryError


class Config(BaseModel):
    """Base of every luminary config: strict keys, validated assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
    # keys this config used to have -> where they live now (named in the error instead of "unknown key")
    moved_keys: ClassVar[dict[str, str]] = {}


C = TypeVar("C", bound=BaseModel)


def _field_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(root)"


def _at(data: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _problems(errors: list[dict], data: Any) -> list[dict]:
    """pydantic's errors with a union's failures folded into one: a value that matched no member of
    ``float | Literal['continue']`` gets one error per member, at its location plus the member's tag
    (a tag, not a key: the value there is not a mapping that holds it)."""
    def union_key(e: dict):
        loc = e["loc"]
        if e["type"] in ("extra_forbidden", "missing") or len(loc) < 2 or not isinstance(loc[-1], str):
            return None
        value = _at(data, loc[:-1])
        if value is None or (isinstance(value, dict) and loc[-1] in value):
            return None
        return loc[:-1]

    keys = [union_key(e) for e in errors]
    problems, done = [], set()
    for e, key in zip(errors, keys):
        members = [m for m, k in zip(errors, keys) if key is not None and k == key]
        if len(members) < 2:
            problems.append(e)
        elif key not in done:  # "should be a valid number or 'continue'"
            done.add(key)
            wanted = [m["msg"].removeprefix("Input should be ").split(",")[0] for m in members]
            problems.append({**e, "loc": key, "msg": "should be " + " or ".join(wanted)})
    return problems


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, tuple, dict, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _models_at(root: type[BaseModel] | None, loc: tuple) -> list[type[BaseModel]]:
    """The config classes whose keys sit at ``loc`` (best effort: unions give several)."""
    current = [root] if root is not None else []
    for part in loc:
        if not isinstance(part, str) or any(part == m.__name__ for m in current):
            continue  # a list index, a dict key, or a union member's tag
        nxt = [m for c in current if part in c.model_fields for m in _models_in(c.model_fields[part].annotation)]
        if nxt:
            current = nxt
        elif not any(part in c.model_fields for c in current):
            continue  # a mapping's own key: its values are the annotation's models, already current
        else:
            return []
    return current


def _unknown_key(root: type[BaseModel] | None, loc: tuple) -> str:
    """'unknown key', with where it moved or the field it most resembles."""
    key = loc[-1]
    models = _models_at(root, loc[:-1])
    moved = {k: v for m in models for k, v in m.moved_keys.items()}
    if isinstance(key, str) and key in moved:
        return f"has moved: write it as {moved[key]}"
    known = sorted({name for m in models for name in m.model_fields})
    close = get_close_matches(str(key), known, n=1) if known else []
    return f"unknown key; did you mean '{close[0]}'?" if close else "unknown key"


def describe_validation_error(error: ValidationError, source: str, data: Any = None,
                              root: type[BaseModel] | None = None) -> str:
    """One line for the first problem of a pydantic ``ValidationError`` raised on ``data`` (as ``root``).

    An unknown key is reported before anything else: a misspelt key usually
    also makes a required one missing, and the misspelling is the news.
    """
    errors = _problems(error.errors(), data)
    errors.sort(key=lambda e: e.get("type") != "extra_forbidden")
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    field = _field_path(loc)
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        msg = _unknown_key(root, loc)
    elif kind == "missing":
        msg = "required field is missing"
    else:
        msg = first["msg"].removeprefix("Value error, ")
        if "input" in first and kind not in ("value_error", "assertion_error"):
            msg += f" (got {first['input']!r})"
    more = len(errors) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {field}: {msg}{suffix}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file (and line)."""
    from luminary.core.io import read_text  # here: core.io imports torch, which reading a config needs not

    path = Path(path)
    try:
        data = yaml.safe_load(read_text(path, "config file"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        if isinstance(exc, yaml.reader.ReaderError):  # a control character: no line, a position
            where, problem = f" character {exc.position}:", f"{exc.character!r} is not allowed in YAML"
        problem = " ".join(str(problem or exc).split())  # one line, whatever the parser said
        raise LuminaryError(f"{path}:{where} not valid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LuminaryError(f"{path}: expected a mapping of keys at the top, got {type(data).__name__}")
    return data


def validate(cls: type[C], data: dict[str, Any], source: str) -> C:
    """Validate ``data`` as ``cls``; a failure becomes one line naming ``source``."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise LuminaryError(describe_validation_error(exc, source, data, cls)) from None


def load_config(path: str | Path, cls: type[C], overrides: dict[str, Any] | None = None) -> C:
    """Load a YAML file as ``cls``; ``overrides`` (dotted keys) are applied first."""
    data = read_yaml(path)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return validate(cls, data, str(path))


def dump_config(config: BaseModel) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (defaults filled in)."""
    return config.model_dump(mode="json")
