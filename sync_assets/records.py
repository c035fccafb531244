"""Finding things inside a JSON response: the records list, a total, a next-page token.

Paths are dotted (``data.items``); an empty path means the response itself. A response that does
not hold a list where the stream says records are is a ``SyncSystemError``: guessing would risk
storing the wrong thing and advancing state past data we never saw.
"""

from __future__ import annotations

from typing import Any, Protocol

from sync_assets.errors import SyncSystemError


class Answer(Protocol):
    """What ``select_records`` needs of a response: its decoded body, and where it came from (for errors).
    A protocol rather than ``http.ApiResponse``, so that this module depends on nothing that depends on it."""

    @property
    def body(self) -> Any: ...

    @property
    def where(self) -> str: ...

_MISSING = object()


def dig(obj: Any, path: str | None) -> Any:
    """The value at ``path`` in ``obj``, or ``None`` when any step is missing."""
    if not path:
        return obj
    for part in path.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part, _MISSING)
        elif isinstance(obj, list) and part.lstrip("-").isdigit():
            index = int(part)
            obj = obj[index] if -len(obj) <= index < len(obj) else _MISSING
        else:
            return None
        if obj is _MISSING:
            return None
    return obj


def dig_matches(obj: Any, path: str) -> list[Any]:
    """Every value at ``path``, whose ``*`` steps match every item of a list or value of an object
    (``items.*.snippet``: each item's snippet). A match that is itself a list gives its items."""
    found: list[Any] = [obj]
    for part in path.split("."):
        step: list[Any] = []
        for value in found:
            if part == "*":
                step.extend(value if isinstance(value, list) else value.values() if isinstance(value, dict) else [])
            elif (item := dig(value, part)) is not None:
                step.append(item)
        found = step
    return [item for value in found for item in (value if isinstance(value, list) else [value])]


def dig_each(objects: list[Any], path: str) -> list[Any]:
    """``dig(obj, path)`` of each object: a cursor or key of every record of a page. A plain field
    name, the common case, is one dictionary lookup."""
    if path and "." not in path:
        return [obj.get(path) if type(obj) is dict else dig(obj, path) for obj in objects]
    return [dig(obj, path) for obj in objects]


def select_records(response: Answer, path: str | None) -> list[dict[str, Any]]:
    """The list of records at ``path`` in a response's body. Only a failure names the request: masking
    its URL costs more than the rest of this."""
    records = dig_matches(response.body, path) if path and "*" in path.split(".") else dig(response.body, path)
    if not isinstance(records, list):
        found = "nothing" if records is None else type(records).__name__
        raise SyncSystemError(
            f"expected a list of records at records_path {path or '(the response root)'!r} in the "
            f"response of {response.where}, found {found}; check the stream's records_path"
        )
    if records and not isinstance(records[0], dict):
        raise SyncSystemError(
            f"records at {path or '(the response root)'!r} in the response of {response.where} are "
            f"{type(records[0]).__name__}, not JSON objects; point records_path at a list of objects"
        )
    return records
