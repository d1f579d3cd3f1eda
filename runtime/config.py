"""Typed configuration: YAML files plus `a.b.c=value` overrides, turned into nested dataclasses.

Every job has one root dataclass beside the code that runs it (training: `trainer/jobs.py`; eval:
`eval/config.py`; translation: `eval/translation/config.py`; `launch/jobs.py` lists them). Each field carries
its documentation in `metadata["help"]` (see `data.config.option`), from which `docs/config.md` is generated
(`python -m launch.config_docs`). Unknown keys are errors with a "did you mean" hint; values are checked
against the field's type; each dataclass may define `check()` for cross-field rules.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from data.errors import ConfigError
from data.files import atomic_write_text

T = TypeVar("T")
_MISSING = dataclasses.MISSING


# ---------------------------------------------------------------------------------------------------------
# Overrides on the raw (dict/list) tree
# ---------------------------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.0.c=value` -> (["a", "b", "0", "c"], parsed YAML value)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected key=value (for example train.max_steps=10)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"override {text!r}: value is not valid YAML ({first})") from None
    parts = key.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"override {text!r}: empty component in key {key!r}")
    return parts, value


def apply_override(tree: dict, parts: list[str], value: Any, *, text: str) -> None:
    """Set `value` at the path `parts` inside the nested dict/list `tree`, creating dicts as needed."""
    node: Any = tree
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, where=where, text=text)]
        elif isinstance(node, dict):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"override {text!r}: {'.'.join(parts[:depth])} is a value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, where=".".join(parts), text=text)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override {text!r}: {'.'.join(parts[:-1])} is a value, not a section")


def _list_index(node: list, part: str, *, where: str, text: str) -> int:
    if not part.lstrip("-").isdigit():
        raise ConfigError(f"override {text!r}: {where}: a list needs a numeric index, got {part!r}")
    index = int(part)
    if not -len(node) <= index < len(node):
        raise ConfigError(
            f"override {text!r}: {where}: index {index} out of range (list has {len(node)} items)"
        )
    return index


# ---------------------------------------------------------------------------------------------------------
# Raw tree -> dataclasses
# ---------------------------------------------------------------------------------------------------------


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    """Human-readable type: `int`, `cosine | linear`, `str or null`, `list[SourceConfig]`."""
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(str(c) for c in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in get_args(tp))
    if origin in (list, Sequence, tuple):
        return f"list[{', '.join(_describe(a) for a in get_args(tp))}]"
    if origin in (dict, Mapping):
        return "mapping"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp` and build dataclasses where the type asks for them."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}{suffix}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin in (list, Sequence, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_convert(item, item_tp, f"{where}.{i}") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            # YAML 1.1 reads "2e-5" as a string; accept it as a number.
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise AssertionError(f"unsupported config annotation {tp!r} at {where}")


def _build(cls: type[T], raw: Any, where: str) -> T:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a section (mapping), got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _type_hints(cls)
    for key in raw:
        if key not in fields:
            path = f"{where}.{key}" if where else str(key)
            hint = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            suffix = f"; did you mean {hint[0]!r}?" if hint else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"unknown key {path!r}{suffix}")
    kwargs = {}
    for name, field in fields.items():
        path = f"{where}.{name}" if where else name
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], path)
        elif dataclasses.is_dataclass(hints[name]):
            # An absent section is built from its defaults so that its own checks still run.
            kwargs[name] = _build(hints[name], {}, path)
        elif field.default is _MISSING and field.default_factory is _MISSING:
            raise ConfigError(f"missing required key {path!r}: {field.metadata.get('help', '')}".rstrip(": "))
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except ConfigError as exc:  # a section's own check: name the section unless the message does
            message = str(exc)
            prefix = f"{where}: " if where and not message.startswith(where) else ""
            raise ConfigError(f"{prefix}{message}") from None
    return obj


def build_config(cls: type[T], raw: Mapping[str, Any] | None = None) -> T:
    """Build and check the dataclass `cls` from a raw nested mapping."""
    return _build(cls, dict(raw or {}), "")


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 at byte {exc.start}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{line}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Load `path` (optional), apply `overrides` (`a.b.c=value`, values parsed as YAML), build `cls`."""
    raw = read_yaml(path) if path is not None else {}
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(raw, parts, value, text=text)
    try:
        return build_config(cls, raw)
    except ConfigError as exc:
        if path is not None:
            raise ConfigError(f"{path}: {exc}") from None
        raise


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict (lists, not tuples) of a config dataclass, suitable for YAML or JSON."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cfg)


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)


def write_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, dump_config(cfg))


def iter_fields(cls: type, prefix: str = "") -> typing.Iterator[tuple[str, Any, Any, str]]:
    """Yield (dotted key, type, default, help) for every leaf and section of `cls`, depth first."""
    hints = _type_hints(cls)
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        tp = hints[field.name]
        if field.default is not _MISSING:
            default = field.default
        elif field.default_factory is not _MISSING:
            default = field.default_factory()
        else:
            default = _MISSING
        yield key, tp, default, field.metadata.get("help", "")
        inner = _section_type(tp)
        if inner is not None:
            yield from iter_fields(inner, f"{key}[]." if _is_list(tp) else f"{key}.")


def _is_list(tp: Any) -> bool:
    return get_origin(tp) in (list, Sequence, tuple)


def _section_type(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    if _is_list(tp):
        args = get_args(tp)
        if args and dataclasses.is_dataclass(args[0]):
            return args[0]
    if get_origin(tp) in (Union, types.UnionType):
        for arg in get_args(tp):
            if dataclasses.is_dataclass(arg):
                return arg
    return None
