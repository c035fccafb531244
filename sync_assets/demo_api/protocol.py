"""What the handler and every endpoint share: a parsed request in, a page or a reply out.

Real APIs reject a bad parameter with a message that names it, and hand out opaque, tamper-evident page
tokens; doing both in one place keeps every endpoint answering the same way, so that clients meet one
consistent API whichever pagination style they are tested against.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sync_assets.demo_api import data

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_DAY_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
_TOKEN_KEY = b"sync-assets-demo-api-token"


# --- replies ----------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    transport: str | None = None  # how the reply is damaged on the wire: reset, truncated, slow_body


@dataclass
class Page:
    """An endpoint's successful answer; ``records_key`` says where the records are (None: the body is
    the list), which is what the ``not_list`` fault needs to know."""

    body: Any
    records_key: str | None
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(body, separators=(",", ":")).encode(), headers or {})


def bad_request(error: BadParameter) -> Reply:
    return json_reply(400, {"error": "bad_request", "message": str(error), "parameter": error.parameter})


# --- query parameters and pagination tokens ---------------------------------------------------------------


class BadParameter(Exception):
    """A query parameter the endpoint cannot use; the message names it so clients can fix the call."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"invalid query parameter '{name}': {problem}")
        self.parameter = name


class NotFound(Exception):
    pass


class Query:
    """The query string of one request: typed accessors that raise BadParameter, plus the raw pairs so
    next-page URLs can carry every original parameter."""

    def __init__(self, query_string: str) -> None:
        self.pairs = parse_qsl(query_string, keep_blank_values=True)
        self._values: dict[str, str] = {}
        for name, value in self.pairs:
            self._values.setdefault(name, value)

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def integer(self, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
        text = self.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise BadParameter(name, f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise BadParameter(name, f"must be {bounds}, got {value}")
        return value

    def page_size(self, name: str) -> int:
        return self.integer(name, DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)

    def day(self, name: str) -> date:
        text = self.get(name)
        if text is None:
            raise BadParameter(name, "required (YYYY-MM-DD)")
        try:
            if not _DAY_PATTERN.fullmatch(text):
                raise ValueError(text)
            return date.fromisoformat(text)
        except ValueError:
            raise BadParameter(name, f"expected a date YYYY-MM-DD, got {text!r}") from None

    def epoch(self, name: str, unit: str = "seconds") -> datetime | None:
        """An epoch timestamp in ``seconds`` or ``milliseconds``, as Stripe-style filters take them."""
        text = self.get(name)
        if text is None:
            return None
        if not text.isdigit():
            raise BadParameter(name, f"expected epoch {unit}, got {text!r}")
        return datetime.fromtimestamp(int(text) / (1000 if unit == "milliseconds" else 1), tz=UTC)

    def instant(self, name: str) -> datetime | None:
        text = self.get(name)
        if text is None:
            return None
        try:
            return data.parse_instant(text)
        except ValueError:
            hint = " ('+' in an offset must be sent as %2B)" if " " in text else ""
            problem = f"expected an ISO 8601 datetime with an offset, got {text!r}{hint}"
            raise BadParameter(name, problem) from None

    def url_with(self, base_url: str, path: str, name: str, value: str) -> str:
        """This request's URL with one parameter replaced: real APIs keep every other parameter,
        credentials included, in their next links."""
        pairs = [(key, existing) for key, existing in self.pairs if key != name]
        return f"{base_url}{path}?{urlencode([*pairs, (name, value)])}"


def _token_checksum(kind: str, position: int) -> str:
    return hashlib.blake2b(f"{kind}:{position}".encode(), digest_size=6, key=_TOKEN_KEY).hexdigest()


def encode_token(kind: str, position: int) -> str:
    """Opaque and tamper-evident: base64 of a small JSON document with a keyed checksum, so clients
    cannot (and need not) build tokens themselves, as with real cursor APIs."""
    document = json.dumps({"after": position, "check": _token_checksum(kind, position)})
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def decode_token(kind: str, token: str, parameter: str) -> int:
    try:
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position = document["after"]
        valid = (
            type(position) is int
            and position >= 0
            and hmac.compare_digest(str(document["check"]), _token_checksum(kind, position))
        )
    except (binascii.Error, ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise BadParameter(parameter, "invalid or corrupted token; pass the value of the previous page")
    return int(position)


# --- requests and their bodies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    path: str
    path_args: tuple[str, ...]
    query: Query
    base_url: str
    fault: str | None = None
    headers: Any = None  # the request's headers (an email.message.Message)
    body: bytes = b""


def form_fields(headers: Message | None, body: bytes) -> dict[str, str] | None:
    """A form body's fields (by its Content-Type); ``None`` for any other body."""
    if headers is None or not (headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
        return None
    return dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))


def body_fields(request: Request) -> dict[str, Any]:
    """A request body's fields: a form by its Content-Type, else a JSON object (no body: none)."""
    form = form_fields(request.headers, request.body)
    if form is not None:
        return form
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise BadParameter("body", "expected a JSON object or a form") from None
    if not isinstance(body, dict):
        raise BadParameter("body", "expected a JSON object or a form")
    return body
