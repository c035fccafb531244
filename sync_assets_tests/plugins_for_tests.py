"""Parts of one's own, as a user would write them, for the custom paginator, auth and transform tests."""

from __future__ import annotations

from typing import Any


class PagesOf:
    """Page numbers in ``page`` and ``per_page``, as the demo surveys take them; the last page is a short one."""

    def __init__(self, size: int) -> None:
        self.size = size

    def apply(self, url: str, params: dict[str, Any], token: Any) -> tuple[str, dict[str, Any]]:
        return url, {**params, "page": token or 1, "per_page": self.size}

    def next_token(self, response: Any, records: list[Any], token: Any) -> Any:
        return None if len(records) < self.size else (token or 1) + 1


class Broken(PagesOf):
    def next_token(self, response: Any, records: list[Any], token: Any) -> Any:
        raise KeyError("cursor")


class Leaky(PagesOf):
    """Fails with its own credential in the message, as a careless plugin does."""

    def next_token(self, response: Any, records: list[Any], token: Any) -> Any:
        raise RuntimeError(f"no cursor in {response.url}, sent with key leaky-secret-value")


class HeaderToken:
    """A token sent in a header of the API's own naming; ``renew`` counts how often it was asked to."""

    renewals = 0

    def __init__(self, token: str, header: str = "X-API-Key") -> None:
        self.token, self.header = token, header

    def headers(self) -> dict[str, str]:
        return {self.header: self.token}

    def renew(self) -> None:
        HeaderToken.renewals += 1


def tidy(record: dict[str, Any]) -> dict[str, Any] | None:
    """Renames a field, adds one, drops another; leaves out surveys without questions."""
    if not record.get("question_count"):
        return None
    out = {**record, "name": record["title"], "kind": "survey"}
    del out["title"]
    return out


def one_id_on_january_4(record: dict[str, Any]) -> dict[str, Any]:
    """Gives every survey modified on 2024-01-04 the same id: a partition whose primary key repeats."""
    return {**record, "id": 1} if str(record["date_modified"]).startswith("2024-01-04") else record
