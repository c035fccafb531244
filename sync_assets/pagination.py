"""Pagination styles, one small class each, with the page token as an explicit value.

A paginator never hides its position in mutable attributes. It answers two questions:

- ``apply(url, params, token)``: the request for the page that ``token`` names (``None`` = the first);
- ``next_token(response, records, token)``: the token of the next page, or ``None`` when done.

Tokens are plain JSON values (a page number, an offset, an opaque cursor, a URL), so the token
*is* the checkpoint of a resumable read: storing it after a page is all the state a resumed
read needs, and stream authors write no state code at all.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from sync_assets.errors import SyncSystemError
from sync_assets.plugins import build, call
from sync_assets.records import dig

if TYPE_CHECKING:
    from sync_assets.http import ApiResponse

Token = int | str
"""A page position: page number or offset (int), opaque cursor or next URL (str)."""


def token_fingerprint(token: Token | None) -> int:
    """A token as a signed 64-bit number: equal tokens, equal fingerprints (a collision is a 1 in 2**64
    chance). Reads remember these, not the tokens (some are long URLs), to recognise a page seen before."""
    text = json.dumps(token, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little", signed=True)


Params = dict[str, Any]


class _Paginator(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def apply(self, url: str, params: Params, token: Token | None) -> tuple[str, Params]:
        raise NotImplementedError

    def next_token(self, response: ApiResponse, records: list[Any], token: Token | None) -> Token | None:
        raise NotImplementedError

    @property
    def random_access(self) -> bool:
        """Whether any page's token can be computed up front (page number or offset, with a total)."""
        return False

    def page_count(self, response: ApiResponse) -> int | None:
        """How many pages the whole result has, when the first response says (random access)."""
        return None

    def token_for_page(self, index: int) -> Token | None:
        """The token of page ``index`` (0-based); only for paginators with random access."""
        raise NotImplementedError(f"{type(self).__name__} reads pages in order only")


def _check_full_page(response: ApiResponse, records: list[Any], size: int | None, reached: bool | None) -> None:
    """With a total, positions are computed from the page size: a page of another size would skip records."""
    if reached is False and size and len(records) != size:
        raise SyncSystemError(
            f"the response of {response.where} holds {len(records)} records, not the page size {size}, before "
            "the total is reached; set the paginator's size/limit to what the API really returns"
        )


def _pages_for_total(response: ApiResponse, total_path: str | None, page_size: int | None) -> int | None:
    if total_path is None or not page_size:
        return None
    total = dig(response.body, total_path)
    return -(-total // page_size) if isinstance(total, int) and total >= 0 else None


class NoPagination(_Paginator):
    """The whole result comes in one response."""

    type: Literal["none"] = "none"

    def apply(self, url: str, params: Params, token: Token | None) -> tuple[str, Params]:
        return url, params

    def next_token(self, response: ApiResponse, records: list[Any], token: Token | None) -> Token | None:
        return None


def _total_reached(response: ApiResponse, total_path: str | None, seen: int) -> bool | None:
    """Whether ``seen`` records cover the total the API reports; ``None`` when it reports none."""
    if total_path is None:
        return None
    total = dig(response.body, total_path)
    if not isinstance(total, int):
        raise SyncSystemError(
            f"expected an integer total at total_path {total_path!r} in the response of "
            f"{response.where}, found {total!r}; fix total_path or remove it"
        )
    return seen >= total


class PageNumber(_Paginator):
    """``?page=2&per_page=100``; e.g. ``{"data": [...], "page": 2, "total": 250}``.

    Stops at an empty page, a short page, or (with ``total_path``) once ``total`` records are read.
    """

    type: Literal["page_number"] = "page_number"
    page_param: str = "page"
    start_page: int = 1
    size_param: str | None = "per_page"
    size: int | None = Field(100, gt=0)
    total_path: str | None = Field(None, description="Path to the total number of records.")

    def apply(self, url: str, params: Params, token: Token | None) -> tuple[str, Params]:
        params = {**params, self.page_param: self.start_page if token is None else token}
        if self.size_param and self.size:
            params[self.size_param] = self.size
        return url, params

    def next_token(self, response: ApiResponse, records: list[Any], token: Token | None) -> Token | None:
        page = self.start_page if token is None else int(token)
        if not records:
            return None
        pages_read = page - self.start_page + 1
        reached = _total_reached(response, self.total_path, pages_read * (self.size or len(records)))
        _check_full_page(response, records, self.size, reached)
        if reached or (reached is None and self.size and len(records) < self.size):
            return None
        return page + 1

    @property
    def random_access(self) -> bool:
        return self.total_path is not None and bool(self.size)

    def page_count(self, response: ApiResponse) -> int | None:
        return _pages_for_total(response, self.total_path, self.size)

    def token_for_page(self, index: int) -> Token | None:
        return None if index == 0 else self.start_page + index


class Offset(_Paginator):
    """``?offset=200&limit=100``; e.g. ``{"items": [...], "total": 250}``.

    Stops at an empty page, a short page, or (with ``total_path``) at the reported total.
    """

    type: Literal["offset"] = "offset"
    offset_param: str = "offset"
    limit_param: str | None = Field("limit", description="None: the page size is the API's own, not asked for.")
    limit: int | None = Field(100, gt=0, description="The page size; None when unknown (stops at an empty page).")
    total_path: str | None = Field(None, description="Path to the total number of records.")

    def apply(self, url: str, params: Params, token: Token | None) -> tuple[str, Params]:
        params = {**params, self.offset_param: 0 if token is None else token}
        if self.limit_param and self.limit:
            params[self.limit_param] = self.limit
        return url, params

    def next_token(self, response: ApiResponse, records: list[Any], token: Token | None) -> Token | None:
        offset = 0 if token is None else int(token)
        if not records:
            return None
        reached = _total_reached(response, self.total_path, offset + len(records))
        _check_full_page(response, records, self.limit, reached)
        if reached or (reached is None and self.limit and len(records) < self.limit):
            return None
        return offset + len(records)

    @property
    def random_access(self) -> bool:
        return self.total_path is not None and self.limit is not None

    def page_count(self, response: ApiResponse) -> int | None:
        return _pages_for_total(response, self.total_path, self.limit)

    def token_for_page(self, index: int) -> Token | None:
        assert self.limit is not None  # random access needs a page size
        return None if index == 0 else index * self.limit


def _token_params(params: Params, size_param: str | None, size: int | None, param: str, token: Token | None) -> Params:
    """The request's parameters with the page size and, after the first page, the token."""
    params = dict(params)
    if size_param and size:
        params[size_param] = size
    if token is not None:
        params[param] = token
    return params


class CursorToken(_Paginator):
    """An opaque token from the body sent back as a parameter; ``{"data": [...], "next_cursor": "abc"}``."""

    type: Literal["cursor"] = "cursor"
    token_path: str = "next_cursor"
    param: str = "cursor"
    size_param: str | None = None
    size: int | None = Field(None, gt=0)

    def apply(self, url: str, params: Params, token: Token | None) -> tuple[str, Params]:
        return url, _token_params(params, self.size_param, self.size, self.param, token)

    def next_token(self, response: ApiResponse, records: list[Any], token: Token | None) -> Token | None:
        value = dig(response.body, self.token_path)
        return str(value) if value not in (None, "") else None


class LastRecord(_Paginator):
    """The last record's id sent back as the next page's start, Stripe's ``starting_after`` (Shopify's
    ``since_id``), while the body says there is more: ``{"data": [...], "has_more": true}``."""

    type: Literal["last_record"] = "last_record"
    param: str = "starting_after"
    field: str = "id"
    has_more_path: str | None = Field("has_more", description="Without one, an empty page is the last.")
    size_param: str | None = "limit"
    size: int | None = Field(100, gt=0)

    def apply(self, url: str, params: Params, token: Token | None) -> tuple[str, Params]:
        return url, _token_params(params, self.size_param, self.size, self.param, token)

    def next_token(self, response: ApiResponse, records: list[Any], token: Token | None) -> Token | None:
        if not records or (self.has_more_path and not dig(response.body, self.has_more_path)):
            return None
        last = records[-1].get(self.field) if isinstance(records[-1], dict) else None
        if last is None:
            raise SyncSystemError(f"the last record of {response.where} has no {self.field!r} to continue after; "
                                  "set the paginator's field")
        return last if isinstance(last, int) else str(last)


class _NextUrl(_Paginator):
    """Shared by the styles whose token is the next page's full URL."""

    def apply(self, url: str, params: Params, token: Token | None) -> tuple[str, Params]:
        # The next URL already carries the query of the first request; auth is added by the client.
        return (url, params) if token is None else (rebased(str(token), url), {})

    def _token_from(self, response: ApiResponse, link: Any) -> Token | None:
        return next_page_url(response, link)


def next_page_url(response: ApiResponse, link: Any) -> str | None:
    """A next-page link (absolute, or relative to the response's URL) as the URL to request, without our
    credentials in it; a link to another host is refused: credentials are only sent to the source's host."""
    if not link:
        return None
    absolute = urljoin(response.url, str(link))
    if urlsplit(absolute).netloc != urlsplit(response.url).netloc:
        raise SyncSystemError(
            f"the next-page link of {response.where} points to another host "
            f"({urlsplit(absolute).netloc}); credentials are only sent to the source's host"
        )
    return response.strip_auth(absolute)


def rebased(next_url: str, url: str) -> str:
    """A next-page URL moved to where the source is now (``url``: the stream's URL on today's ``base_url``).

    A saved checkpoint holds the URL the API gave, host and all; an API that moved, or went behind a proxy
    with a path of its own, since then would be asked at its old address. Another host than ``url``'s can
    only mean that (a link to another host is refused when it arrives): the host becomes today's, and the
    path's part in common with ``url`` (the endpoint, read from the end) keeps today's prefix.
    """
    saved, now = urlsplit(next_url), urlsplit(url)
    if (saved.scheme, saved.netloc) == (now.scheme, now.netloc):
        return next_url
    old, new = saved.path.split("/"), now.path.split("/")
    common = 0
    while common < min(len(old), len(new)) - 1 and old[-1 - common] == new[-1 - common]:
        common += 1
    path = "/".join(new[:len(new) - common] + old[len(old) - common:]) if common else saved.path
    return urlunsplit((now.scheme, now.netloc, path, saved.query, saved.fragment))


class NextUrl(_NextUrl):
    """The body names the next page's URL: ``{"data": [...], "next": "https://api/x?page_token=..."}``."""

    type: Literal["next_url"] = "next_url"
    url_path: str = "next"

    def next_token(self, response: ApiResponse, records: list[Any], token: Token | None) -> Token | None:
        return self._token_from(response, dig(response.body, self.url_path))


class LinkHeader(_NextUrl):
    """RFC 8288 ``Link: <https://api/x?after=123>; rel="next"`` (GitHub style)."""

    type: Literal["link_header"] = "link_header"
    rel: str = "next"

    def next_token(self, response: ApiResponse, records: list[Any], token: Token | None) -> Token | None:
        return self._token_from(response, response.links.get(self.rel, {}).get("url"))


class CustomPaginator(_Paginator):
    """A paginator of one's own: ``class`` (``package.module:Class``) built with ``options`` as keyword
    arguments. It implements the protocol every built-in paginator implements: ``apply(url, params,
    token) -> (url, params)`` (the request for the page at ``token``; ``None`` is the first) and
    ``next_token(response, records, token) -> token or None`` (``None``: that was the last page)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    type: Literal["custom"] = "custom"
    class_path: str = Field(alias="class", description="package.module:Class")
    options: dict[str, Any] = Field(default_factory=dict)
    _impl: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _built(self) -> CustomPaginator:
        self._impl = build(self.class_path, "paginator", self.options)
        return self

    def apply(self, url: str, params: Params, token: Token | None) -> tuple[str, Params]:
        result: tuple[str, Params] = call(self.class_path, "paginator", self._impl.apply, url, params, token)
        return result

    def next_token(self, response: ApiResponse, records: list[Any], token: Token | None) -> Token | None:
        result: Token | None = call(self.class_path, "paginator", self._impl.next_token, response, records, token)
        return result


Paginator = Annotated[
    NoPagination | PageNumber | Offset | CursorToken | LastRecord | NextUrl | LinkHeader | CustomPaginator,
    Field(discriminator="type"),
]
