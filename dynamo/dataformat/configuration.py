"""Configuration: the original Dynamo's attribute-access configuration object.

A dict whose keys can also be read and written as attributes (``config.store.url``), built
from a dict, keyword arguments, a JSON or TOML file (by path or open file) or JSON text.
Nested dicts become Configurations, lists are walked, and ``$(VARIABLE)`` in a string is
replaced with the environment variable ``VARIABLE`` when the object is built (an unset
variable is a :class:`ConfigurationError` naming it, where the original raised a bare
KeyError). ``repr`` is the JSON text, as in the original.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import IO, Any

from dynamo.errors import ConfigurationError

_VARIABLE = re.compile(r"\$\(([^)]+)\)")


def _substitute(text: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        try:
            return os.environ[name]
        except KeyError:
            raise ConfigurationError(f"configuration: environment variable {name!r} is not set") from None

    return _VARIABLE.sub(value, text)


def parse_config(value: Any) -> Any:
    """Wrap dicts, walk lists, substitute ``$(VAR)`` in strings; other values unchanged."""
    if isinstance(value, str):
        return _substitute(value)
    if isinstance(value, dict):
        return Configuration(value)
    if isinstance(value, (list, tuple)):
        return [parse_config(item) for item in value]
    return value


def _parse_text(text: str, source: str) -> dict[str, Any]:
    """JSON text, or TOML when the source says so (or JSON fails and TOML parses)."""
    try:
        if source.endswith(".toml"):
            return tomllib.loads(text)
        loaded = json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        if source.endswith(".toml"):
            raise ConfigurationError(f"{source}: not valid TOML ({exc})") from exc
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            raise ConfigurationError(f"{source}: neither JSON nor TOML ({exc})") from exc
    if not isinstance(loaded, dict):
        raise ConfigurationError(f"{source}: expected an object at the top, got {type(loaded).__name__}")
    return loaded


def _load(arg: Any) -> dict[str, Any]:
    if arg is None:
        return {}
    if isinstance(arg, dict):
        return dict(arg)
    if isinstance(arg, (str, Path)):
        path = Path(arg)
        if isinstance(arg, str) and arg.lstrip().startswith(("{", "[")):
            return _parse_text(arg, "configuration text")
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        return _parse_text(text, str(path))
    if hasattr(arg, "read"):
        stream: IO[Any] = arg
        data = stream.read()
        if isinstance(data, bytes):
            data = data.decode()
        return _parse_text(data, str(getattr(stream, "name", "configuration stream")))
    raise ConfigurationError(f"configuration: cannot build from a {type(arg).__name__}")


class Configuration(dict[str, Any]):
    """A dict with attribute access; see the module docstring."""

    def __init__(self, _arg: Any = None, **kwd: Any):
        super().__init__()
        config = _load(_arg)
        config.update(kwd)
        for key, value in config.items():
            self[key] = parse_config(value)

    def __getattr__(self, attr: str) -> Any:
        try:
            return self[attr]
        except KeyError:
            # AttributeError keeps hasattr(), getattr(x, name, default) and copy/pickle working
            raise AttributeError(f"configuration has no item {attr!r}") from None

    def __setattr__(self, attr: str, value: Any) -> None:
        self[attr] = value

    def __delattr__(self, attr: str) -> None:
        try:
            del self[attr]
        except KeyError:
            raise AttributeError(f"configuration has no item {attr!r}") from None

    def __repr__(self) -> str:
        return self.dump_json()

    def get(self, attr: str, default: Any = None) -> Any:
        """The value, or ``default`` when absent."""
        return self[attr] if attr in self else default

    def clone(self) -> Configuration:
        """A copy whose nested Configurations and lists are copies too."""
        return Configuration(self)

    def dump_json(self, indent: int = -1) -> str:
        if indent >= 0:
            return json.dumps(self, indent=2, default=str)
        return json.dumps(self, default=str)
