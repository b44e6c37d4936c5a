"""Map web modules to URLs, exactly as the original's documentation describes.

A module ``mymod.py`` or a package ``mypkg/__init__.py`` in ``dynamo.web.modules`` (or in an
extra directory named in ``[web] module_dirs``) is the URL component ``mymod`` / ``mypkg``;
its ``export_web`` and ``export_data`` dicts map names to ``WebModule`` classes:
``/web/mymod/<name>`` and ``/data/mymod/<name>``. In a package only ``__init__.py`` is
looked at; its other files map to nothing. Names starting with ``_`` are helpers.

Modules are installed by administrators, so one that fails to import or exports something
that is not a ``WebModule`` stops the server with a message naming it, rather than leaving a
hole that answers 404. An extra directory may not shadow an earlier module of the same name.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import pkgutil
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from dynamo.errors import ConfigurationError
from dynamo.web.modules._base import WebModule

log = logging.getLogger("dynamo.web")

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass
class ModuleMap:
    web: dict[str, dict[str, type[WebModule]]] = field(default_factory=dict)
    data: dict[str, dict[str, type[WebModule]]] = field(default_factory=dict)

    def find(self, mode: str, module: str, command: str) -> type[WebModule] | None:
        table = self.web if mode == "web" else self.data
        return table.get(module, {}).get(command)


def _exports(module: ModuleType, name: str, attr: str) -> dict[str, type[WebModule]]:
    exported = getattr(module, attr, None)
    if exported is None:
        return {}
    if not isinstance(exported, dict):
        raise ConfigurationError(f"web module {name}: {attr} must be a dict of name: class")
    for command, cls in exported.items():
        if not isinstance(command, str) or not command or command.startswith("/"):
            raise ConfigurationError(f"web module {name}: {attr} key {command!r} is not a name")
        if not (isinstance(cls, type) and issubclass(cls, WebModule)):
            raise ConfigurationError(f"web module {name}: {attr}[{command!r}] does not inherit from WebModule")
    return dict(exported)


def _add(table: ModuleMap, name: str, module: ModuleType) -> None:
    if name in table.web or name in table.data:
        raise ConfigurationError(f"web module {name}: defined twice (an extra directory may not shadow it)")
    web = _exports(module, name, "export_web")
    data = _exports(module, name, "export_data")
    if not web and not data:
        log.warning("web module %s exports nothing (no export_web or export_data)", name)
    table.web[name] = web
    table.data[name] = data


def _candidates(directory: Path) -> list[tuple[str, Path, bool]]:
    """(name, file, is_package) for each module or package in ``directory``."""
    found = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_file() and entry.suffix == ".py" and _NAME.match(entry.stem):
            found.append((entry.stem, entry, False))
        elif entry.is_dir() and (entry / "__init__.py").is_file() and _NAME.match(entry.name):
            found.append((entry.name, entry / "__init__.py", True))
    return found


def _import_file(qualified: str, path: Path, package: bool) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        qualified, path, submodule_search_locations=[str(path.parent)] if package else None)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"web module {path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module  # a package's relative imports find it there
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[qualified]
        raise ConfigurationError(f"web module {path}: {type(exc).__name__}: {exc}") from exc
    return module


def load_modules(extra_dirs: tuple[Path, ...] = ()) -> ModuleMap:
    table = ModuleMap()
    import dynamo.web.modules as builtin

    for info in pkgutil.iter_modules(builtin.__path__):
        if info.name.startswith("_"):
            continue
        _add(table, info.name, importlib.import_module(f"dynamo.web.modules.{info.name}"))
    for index, directory in enumerate(extra_dirs):
        if not directory.is_dir():
            raise ConfigurationError(f"[web] module_dirs: {directory} is not a directory")
        for name, path, package in _candidates(directory):
            # a private namespace per directory, so that a site's "util" never replaces another's
            _add(table, name, _import_file(f"dynamo_web_site{index}_{name}", path, package))
    return table
