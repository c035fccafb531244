"""Finding things inside a JSON response: the records list, a total, a next-page token.

Paths are dotted (``data.items``); an empty path means the response itself. A response that does
not hold a list where the stream says records are is a ``SyncSystemError``: guessing would risk
storing the wrong thing and advancing state past data we never saw.
"""

from __future__ import annotations

from typing import Any

from sync_assets.errors import SyncSystemError

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


def select_records(body: Any, path: str | None, where: str) -> list[dict[str, Any]]:
    """The list of records at ``path``; ``where`` names the request for the error message."""
    records = dig(body, path)
    if not isinstance(records, list):
        found = "nothing" if records is None else type(records).__name__
        raise SyncSystemError(
            f"expected a list of records at records_path {path or '(the response root)'!r} in the "
            f"response of {where}, found {found}; check the stream's records_path"
        )
    if records and not isinstance(records[0], dict):
        raise SyncSystemError(
            f"records at {path or '(the response root)'!r} in the response of {where} are "
            f"{type(records[0]).__name__}, not JSON objects; point records_path at a list of objects"
        )
    return records
