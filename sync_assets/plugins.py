"""Parts of one's own, named by import path in a source: ``package.module:Name``.

A paginator, an auth or a record transform that the built-in kinds do not cover is written in Python
and referenced from YAML (``{type: custom, class: my_pkg.paging:MyPaginator, options: {...}}``,
``transform: my_pkg.fix:tidy``). They are imported when the source is validated, so a wrong path is
a config error with its YAML line; what they raise while syncing names them and the stream.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from sync_assets.errors import SyncError, SyncSystemError
from sync_assets.redaction import mask

IMPORT_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class PluginError(SyncSystemError):
    """A part of the user's own failed; the reader adds the stream's name."""


def load(path: str, what: str) -> Any:
    """The object at ``package.module:Name``; a ``ValueError`` (for pydantic to report) when there is none."""
    if not re.fullmatch(IMPORT_PATH, path):
        raise ValueError(f"{what} must be an import path like my_package.module:Name, got {path!r}")
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name} for {what} {path}: {exc}") from None
    if not hasattr(module, name):
        raise ValueError(f"{module_name} has no {name} (for {what} {path})")
    return getattr(module, name)


def build(path: str, what: str, options: dict[str, Any]) -> Any:
    """An instance of the class at ``path`` built with ``options``; a ``ValueError`` (for pydantic to report)
    when there is none, or it does not take them."""
    try:
        return load(path, what)(**options)
    except TypeError as exc:
        raise ValueError(f"{what} {path} does not take these options: {exc}") from None


def call(path: str, what: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, with anything it raises (but our own errors) named after the part."""
    try:
        return fn(*args)
    except SyncError:
        raise
    except Exception as exc:
        raise PluginError(f"{what} {path} raised {type(exc).__name__}: {mask(str(exc))}") from exc
