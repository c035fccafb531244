"""How a request proves who it is: bearer token, API key (header or query), HTTP basic, and tokens
that expire and are renewed (OAuth2 client credentials or refresh token, a session login).

Each kind is a small pydantic model (the YAML ``auth: {type: ...}`` block) whose ``resolve``
turns env references into the headers and query parameters to send. Resolution happens once per
client, and every secret value is registered for masking on the way. A renewing kind resolves to a
``TokenSource``: one per client, shared by its threads, that fetches the token when first needed,
again shortly before it expires, and once more when the API answers 401. ``resolve`` is given the API's
``SharedBoard`` (``rate_limit``): OAuth2 refresh tokens that the provider rotates are renewed through it,
one process at a time, the newest kept there for every other process and the next run.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import requests
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sync_assets.errors import ConfigurationError, CredentialsRefused, TransientError
from sync_assets.plugins import call, load
from sync_assets.records import dig
from sync_assets.redaction import mask, mask_url, register_secret
from sync_assets.secrets import Env, Secret, Text, resolve_secret, resolve_text

if TYPE_CHECKING:
    from sync_assets.rate_limit import SharedBoard


class HeaderSource(Protocol):
    """Headers worked out per request (a token that expires), and told when the API refused them (401)."""

    def headers(self) -> dict[str, str]: ...

    def renew(self, stale: Mapping[str, str]) -> None: ...


class TokenSource:
    """A token that expires: fetched on first use, renewed ``margin`` before it expires, and on demand
    (after a 401); one fetch at a time for all the threads of a client."""

    def __init__(self, fetch: Callable[[], tuple[str, float | None]], header: str, prefix: str) -> None:
        self._fetch, self._header, self._prefix = fetch, header, prefix
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._refused: ConfigurationError | None = None
        self.fetches = 0

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._refused is not None:  # asking again with the same credentials cannot help, and locks accounts
                raise self._refused
            if self._token is None or time.monotonic() >= self._expires_at:
                self._renew()
            assert self._token is not None
            return {self._header: f"{self._prefix}{self._token}"}

    def renew(self, stale: Mapping[str, str]) -> None:
        """After a 401 to a request sent with ``stale``: fetch anew, unless another thread already has."""
        with self._lock:
            if self._refused is not None:
                raise self._refused
            if self._token is None or stale.get(self._header) == f"{self._prefix}{self._token}":
                self._renew()

    def _renew(self) -> None:
        try:
            token, lifetime = self._fetch()
        except ConfigurationError as exc:
            self._refused = exc
            raise
        register_secret(token)  # before anything can log it
        self.fetches += 1
        self._token = token
        # renew a little before the API would refuse it: a tenth of its life, at most a minute
        self._expires_at = time.monotonic() + (lifetime - min(60.0, lifetime / 10) if lifetime else float("inf"))


@dataclass(frozen=True)
class ResolvedAuth:
    """What to add to every request; ``query_params`` is also what must never be stored."""

    headers: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, str] = field(default_factory=dict)
    body_fields: dict[str, str] = field(default_factory=dict)  # added to each request's body (JSON, or its form)
    tokens: HeaderSource | None = None  # a token that expires, renewed by itself


def _token_request(url: str, what: str, timeout: float = 30.0, extra_headers: Mapping[str, str] | None = None,
                   **kwargs: Any) -> dict[str, Any]:
    """POST to a token endpoint; refused credentials are a configuration error, never retried blindly."""
    where = f"{what} at {mask_url(url)}"
    try:
        response = requests.post(url, timeout=timeout, headers={"Accept": "application/json", **(extra_headers or {})},
                                 **kwargs)
    except requests.RequestException as exc:
        raise TransientError(f"{where} did not answer: {type(exc).__name__}") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(f"{where} answered {response.status_code}", status=response.status_code)
    if response.status_code >= 400:
        raise CredentialsRefused(f"{where} refused our credentials ({response.status_code}: "
                                 f"{mask(response.text)[:200]}); check the auth settings and their env variables")
    try:
        body = response.json()
    except ValueError:
        raise ConfigurationError(f"{where} did not answer JSON; check token_url") from None
    if not isinstance(body, dict):
        raise ConfigurationError(f"{where} did not answer a JSON object; check token_url")
    return body


def _token_from(body: dict[str, Any], token_path: str, expires_path: str | None, what: str) -> tuple[str, float | None]:
    token = dig(body, token_path)
    if not isinstance(token, str) or not token:
        raise ConfigurationError(f"{what} answered no token at {token_path!r}; set token_path "
                                 f"(the answer has {', '.join(sorted(body))})")
    lifetime = dig(body, expires_path) if expires_path else None
    return token, float(lifetime) if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) else None


class OAuth2Auth(BaseModel):
    """OAuth2 access tokens from ``token_url``: the client credentials grant, or the refresh token grant
    when ``refresh_token`` is given. Sent as ``Authorization: Bearer``, renewed before ``expires_in``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["oauth2"] = "oauth2"
    token_url: Text
    client_id: Text
    client_secret: Secret
    refresh_token: Secret | None = Field(None, description="Use the refresh token grant.")
    rotating: bool = Field(
        False, description="The provider answers a new refresh token with each access token and the one used "
                           "stops working: the newest is kept in the API's shared state (rate_limit_store), used "
                           "by one process at a time and found by the next run; refresh_token is only the first.")
    refresh_token_path: str = Field("refresh_token", description="Where the answer holds the new refresh token.")
    scopes: list[str] = Field(default_factory=list)
    extra: dict[str, str] = Field(default_factory=dict, description="More fields of the token request body.")

    @model_validator(mode="after")
    def _rotation_needs_a_refresh_token(self) -> OAuth2Auth:
        if self.rotating and self.refresh_token is None:
            raise ValueError("rotating: true needs refresh_token (the first one); without it the client "
                             "credentials grant is used, and there is nothing to rotate")
        return self

    def resolve(self, shared: SharedBoard | None = None) -> ResolvedAuth:
        url = resolve_text(self.token_url, "auth.token_url")
        form = {"client_id": resolve_text(self.client_id, "auth.client_id"),
                "client_secret": resolve_secret(self.client_secret, "auth.client_secret"), **self.extra}
        first = resolve_secret(self.refresh_token, "auth.refresh_token") if self.refresh_token is not None else None
        if first is not None:
            form.update(grant_type="refresh_token", refresh_token=first)
        else:
            form["grant_type"] = "client_credentials"
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        what = "the OAuth2 token endpoint"

        def fetch() -> tuple[str, float | None]:
            return _token_from(_token_request(url, what, data=form), "access_token", "expires_in", what)

        if not self.rotating:
            return ResolvedAuth(tokens=TokenSource(fetch, "Authorization", "Bearer "))
        if shared is None:
            raise ConfigurationError("auth.rotating needs the API's shared state to keep the newest refresh token: "
                                     "open the client with sync_assets.open_client")
        # one chain per first token: a new one in the config (a re-authorization) starts a new chain
        slot = "oauth2-refresh-token:" + hashlib.sha256(f"{url} {form['client_id']} {first}".encode()).hexdigest()

        def renew(kept: str | None) -> tuple[str, tuple[str, float | None]]:
            answer = _token_request(url, what, data={**form, "refresh_token": kept or first})
            newest = dig(answer, self.refresh_token_path)
            if not isinstance(newest, str) or not newest:
                raise ConfigurationError(f"{what} answered no new refresh token at {self.refresh_token_path!r}; set "
                                         "refresh_token_path, or rotating: false if the provider does not rotate them")
            register_secret(newest)
            return newest, _token_from(answer, "access_token", "expires_in", what)

        return ResolvedAuth(tokens=TokenSource(lambda: shared.rotate(slot, renew), "Authorization", "Bearer "))


class SessionTokenAuth(BaseModel):
    """A login: POST ``body`` (JSON, or a form; its credentials from env variables) to ``login_url``, read the
    token at ``token_path``, send it as ``header`` (with ``prefix``); renewed before ``expires_path`` (or the
    fixed ``lifetime``) says, or on a 401."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["session"] = "session"
    login_url: Text
    body: dict[str, Secret] = Field(description="The login's body, e.g. {username: {env: U}, password: ...}.")
    body_format: Literal["json", "form"] = Field("json", description="How the body is sent.")
    login_headers: dict[str, str] = Field(default_factory=dict, description="Headers of the login request.")
    token_path: str = "token"
    expires_path: str | None = Field(None, description="Where the answer says the token's lifetime, in seconds.")
    lifetime: timedelta | None = Field(None, gt=timedelta(0), description="The token's lifetime when the answer "
                                                                          "does not say (ISO 8601, e.g. P1D).")
    header: str = "Authorization"
    prefix: str = "Bearer "

    def resolve(self, shared: SharedBoard | None = None) -> ResolvedAuth:
        url = resolve_text(self.login_url, "auth.login_url")
        body = {name: resolve_secret(value, f"auth.body.{name}") for name, value in self.body.items()}
        sent: dict[str, Any] = {"json": body} if self.body_format == "json" else {"data": body}
        headers = dict(self.login_headers)

        def fetch() -> tuple[str, float | None]:
            answer = _token_request(url, "the login", extra_headers=headers, **sent)
            token, expires = _token_from(answer, self.token_path, self.expires_path, "the login")
            if expires is None and self.lifetime is not None:
                expires = self.lifetime.total_seconds()
            return token, expires

        return ResolvedAuth(tokens=TokenSource(fetch, self.header, self.prefix))


class BearerAuth(BaseModel):
    """``Authorization: Bearer <token>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["bearer"] = "bearer"
    token: Secret

    def resolve(self, shared: SharedBoard | None = None) -> ResolvedAuth:
        return ResolvedAuth(headers={"Authorization": f"Bearer {resolve_secret(self.token, 'auth.token')}"})


class ApiKeyAuth(BaseModel):
    """An API key sent as a header (``X-API-Key: <key>``), a query parameter (``?api_key=<key>``), or a field of
    each request's body (a JSON field, or a form field of a stream with ``body_format: form``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["api_key"] = "api_key"
    key: Secret
    name: str = Field("X-API-Key", description="Header, query parameter or body field name.")
    location: Literal["header", "query", "body"] = "header"

    def resolve(self, shared: SharedBoard | None = None) -> ResolvedAuth:
        key = resolve_secret(self.key, "auth.key")
        if self.location == "query":
            return ResolvedAuth(query_params={self.name: key})
        if self.location == "body":
            return ResolvedAuth(body_fields={self.name: key})
        return ResolvedAuth(headers={self.name: key})


class BasicAuth(BaseModel):
    """HTTP basic auth: ``Authorization: Basic base64(username:password)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["basic"] = "basic"
    username: Text
    password: Secret

    def resolve(self, shared: SharedBoard | None = None) -> ResolvedAuth:
        user = resolve_text(self.username, "auth.username")
        password = resolve_secret(self.password, "auth.password")
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
        register_secret(encoded)  # the base64 form leaks the password as surely as the plain one
        return ResolvedAuth(headers={"Authorization": f"Basic {encoded}"})


class _PluginHeaders:
    """A custom auth as a ``HeaderSource``: its ``headers()`` per request, its ``renew()`` (if any) after a 401."""

    def __init__(self, path: str, impl: Any) -> None:
        self._path, self._impl = path, impl
        self._lock = threading.Lock()
        self._sent: set[str] = set()  # header values already registered as secrets
        self._current: dict[str, str] | None = None  # what headers() last gave; None once renewed since

    def headers(self) -> dict[str, str]:
        with self._lock:
            headers: dict[str, str] = call(self._path, "auth", self._impl.headers)
            for value in headers.values():
                if value not in self._sent:  # once each: the register is global, and mask() walks all of it
                    register_secret(value)  # whatever it sends is a credential
                    self._sent.add(value)
            self._current = headers
        return headers

    def renew(self, stale: Mapping[str, str]) -> None:
        """After a 401 to a request sent with ``stale``: renew, unless another thread has since (the
        threads refused together renew once, as ``TokenSource`` does)."""
        if hasattr(self._impl, "renew"):
            with self._lock:
                current = self._current
                if current is not None and all(stale.get(name) == value for name, value in current.items()):
                    call(self._path, "auth", self._impl.renew)
                    self._current = None


class CustomAuth(BaseModel):
    """An auth of one's own: ``class`` (``package.module:Class``) built with ``options``; it implements
    ``headers() -> dict`` (called for every request, from any thread: one at a time) and may implement
    ``renew()`` (called once after a 401, before the request is sent again)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    type: Literal["custom"] = "custom"
    class_path: str = Field(alias="class", description="package.module:Class")
    options: dict[str, Env | str | int | float | bool] = Field(
        default_factory=dict, description="Keyword arguments of the class; {env: NAME} values are secrets.")

    @model_validator(mode="after")
    def _importable(self) -> CustomAuth:
        load(self.class_path, "auth")
        return self

    def resolve(self, shared: SharedBoard | None = None) -> ResolvedAuth:
        options = {name: resolve_secret(value, f"auth.options.{name}") if isinstance(value, Env) else value
                   for name, value in self.options.items()}
        try:
            impl = load(self.class_path, "auth")(**options)
        except TypeError as exc:
            raise ConfigurationError(f"auth {self.class_path} does not take these options: {exc}") from None
        return ResolvedAuth(tokens=_PluginHeaders(self.class_path, impl))


Auth = Annotated[BearerAuth | ApiKeyAuth | BasicAuth | OAuth2Auth | SessionTokenAuth | CustomAuth,
                 Field(discriminator="type")]
