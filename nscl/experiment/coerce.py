"""Checking values against type hints, with messages that name the field, the value and what is accepted.

Generic pieces of nscl.experiment.config: `coerce` (a value against a type hint), `describe_type` (a hint in
words, for --help and messages), `read_config_file` (TOML / YAML / JSON) and `check_parameters`
(the chapters' guard against mistyped papermill parameters).

Why not a validation library: pydantic 2 (measured with 2.14) offers two modes, and neither fits. Its strict
mode refuses what every config file and papermill give: a list for a tuple field (`seeds = [0, 1]`) and a
dict for a dataclass field. Its lax mode accepts what must be refused: "3" and True for an int (papermill's
`-p seed True`), "yes" for a bool. Keeping today's messages (field, value, what is accepted, the closest
name) would mean translating every error type back, which is about the size of `coerce` itself.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

__all__ = ["check_parameters", "read_config_file", "describe_type", "coerce", "suggest", "message", "plain"]


def _no_duplicates(path: Path, pairs: list[tuple[Any, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    twice = sorted({str(k) for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError(f"{path}: key(s) {twice} given twice; the last would silently win. Keep one of each")
    return dict(pairs)


def _yaml_load(path: Path, text: str) -> Any:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            pairs = [(self.construct_object(k, deep=deep), self.construct_object(v, deep=deep)) for k, v in node.value]
            return _no_duplicates(path, pairs)

    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def read_config_file(path: str | os.PathLike) -> dict:
    """The mapping in a TOML / YAML / JSON file (an [experiment] table, if present, is the config).

    Refused with a message naming the file: a missing path or a directory, an unknown format, a file that
    does not parse, a key given twice, and an empty file (it would silently mean "every default").
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"config file {str(path)!r} is a directory; give a .toml, .yaml or .json file in it")
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    text = path.read_text()
    if suffix == ".toml":
        import tomllib

        try:
            values = tomllib.loads(text)  # a key given twice is already a TOML error
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML ({err})") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or use a .toml file") from None
        try:
            values = _yaml_load(path, text)
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({err})") from None
    elif suffix == ".json":
        try:
            values = (
                json.loads(text, object_pairs_hook=lambda pairs: _no_duplicates(path, pairs)) if text.strip() else {}
            )
        except ValueError as err:
            if "given twice" in str(err):
                raise
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    else:
        raise ValueError(f"{path}: unknown config format {suffix!r}; accepted: .toml, .yaml, .yml, .json")
    if values is None or values == {}:
        raise ValueError(
            f"{path}: the file holds no setting, and an empty config would silently run every default; give at "
            'least one field (e.g. method = "nsp2"), or leave out --config'
        )
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of field -> value at the top, got {type(values).__name__}")
    return dict(values.get("experiment", values))


# -- the chapters' guard for papermill parameters ---------------------------------------------------

_NOTEBOOK_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_PLAIN = (type(None), bool, int, float, str, list, tuple, dict, set)


def check_parameters(
    namespace: Mapping[str, Any],
    allowed: set[str] | Mapping[str, Any],
    types: Mapping[str, type | tuple[type, ...]] | None = None,
    at_least: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Reject papermill parameters that the chapter does not define (and, given `types`, wrong types).

    papermill writes `-p NAME VALUE` into an `injected-parameters` cell placed right after the chapter's
    `parameters` cell. A mistyped name (`-p benchmrk x`) then becomes one more global and the chapter
    would silently run with its defaults. A chapter guards against that in the first code cell after its
    parameters cell, before anything else is defined:

        # %% tags=["parameters"]
        preset = "tiny"
        seeds = [0]

        # %%
        from nscl.experiment.config import check_parameters
        check_parameters(globals(), {"preset", "seeds"}, types={"seeds": list})

    Every global that holds plain data (None, bool, numbers, strings, lists, tuples, dicts, sets: what
    papermill injects), is not private (`_x`) nor one of IPython's (In, Out, ...) and is not in `allowed`
    is reported, with the closest allowed name. Modules, functions and classes are ignored, so imports
    above the parameters cell are fine; plain constants defined above it must be listed in `allowed`.
    `allowed` may also be a mapping (e.g. the defaults); `types` maps a name to the accepted type(s) (bool is
    not an int here); `at_least` a name to its smallest accepted value.
    Returns the allowed parameters' current values.
    """
    allowed = set(allowed)
    unknown = sorted(
        name
        for name, value in namespace.items()
        if not name.startswith("_")
        and name not in allowed
        and name not in _NOTEBOOK_NAMES
        and isinstance(value, _PLAIN)
    )
    if unknown:
        hints = "; ".join(f"{name!r}{suggest(name, allowed) or ' (no close name)'}" for name in unknown)
        raise ValueError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {hints}. This chapter's parameters "
            f"are {sorted(allowed)}"
        )
    for name, accepted in (types or {}).items():
        kinds = (accepted,) if isinstance(accepted, type) else tuple(accepted)
        value = namespace.get(name)
        # True is an int to Python, never to a reader: `-p seed True` is refused unless bool is accepted
        wrong = isinstance(value, bool) and bool not in kinds
        if name in namespace and (wrong or not isinstance(value, kinds)):
            raise ValueError(message(name, value, " or ".join(t.__name__ for t in kinds), owner="parameter"))
    for name, low in (at_least or {}).items():
        if name in namespace and namespace[name] is not None and namespace[name] < low:
            raise ValueError(message(name, namespace[name], f"a number >= {low:g}", owner="parameter"))
    return {name: namespace[name] for name in sorted(allowed) if name in namespace}


# -- helpers ---------------------------------------------------------------------------------------


def message(name: str, value: Any, accepted: str, owner: str = "ExperimentConfig") -> str:
    label = f"{owner}.{name}" if owner != "parameter" else f"parameter {name}"
    return f"{label}={value!r}: accepted: {accepted}"


def suggest(name: Any, candidates) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def describe_type(hint: Any) -> str:
    """A readable name of a type hint: 'int or None', 'list of int', 'one of ...'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or None" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {describe_type(args[0])}"
        return "list (" + ", ".join(describe_type(a) for a in args) + ")"
    if origin is dict:
        return "dict"
    if hint is Any:
        return "any"
    if dataclasses.is_dataclass(hint):
        return f"{hint.__name__} (or a dict of its fields)"
    return getattr(hint, "__name__", str(hint))


def coerce(where: str, value: Any, hint: Any) -> Any:
    """`value` checked against the type hint (lists become tuples, ints floats); ValueError otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    fail = ValueError(f"{where}={value!r}: accepted: {describe_type(hint)}")
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise fail
        options = [a for a in args if a is not type(None)]
        if len(options) == 1 and dataclasses.is_dataclass(options[0]) and isinstance(value, Mapping):
            return coerce(where, value, options[0])  # `Data | None` given a dict: the dataclass's own message
        for arg in options:
            try:
                return coerce(where, value, arg)
            except ValueError:
                continue
        raise fail
    if origin is Literal:
        if any(type(a) is type(value) and a == value for a in args):
            return value
        raise ValueError(f"{where}={value!r}: accepted: one of {list(args)}" + suggest(value, args))
    if origin is tuple:
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
            raise fail
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(f"{where}[{i}]", v, args[0]) for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise fail
        return (
            tuple(coerce(f"{where}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args))) if args else tuple(value)
        )
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise fail
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise fail
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise fail
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not math.isfinite(value):  # inf / nan pass as floats, then diverge or write non-standard JSON
                raise ValueError(f"{where}={value!r}: accepted: a finite float")
            return float(value)
        if isinstance(value, str) and value.strip().lower().lstrip("+-") in ("inf", "infinity", "nan"):
            raise ValueError(f"{where}={value!r}: accepted: a finite float")
        raise fail
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise fail
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            sub_hints = typing.get_type_hints(hint)
            names = {f.name for f in dataclasses.fields(hint)}
            unknown = [k for k in value if k not in names]
            if unknown:
                raise ValueError(f"{where}: unknown {hint.__name__} fields {unknown}; accepted: {sorted(names)}")
            fields = {k: coerce(f"{where}.{k}", v, sub_hints[k]) for k, v in value.items()}
            try:
                return hint(**fields)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}={value!r}: {err}") from None
        raise fail
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise fail
    return value
