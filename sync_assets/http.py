"""The HTTP client every stream reads through: auth, timeouts, retries, the shared rate limit.

Each request goes through the same steps: wait for the API's shared budget, send it with
timeouts, classify the answer. Classification decides everything that follows:

| answer                               | kind                 | what happens                        |
| ------------------------------------ | -------------------- | ----------------------------------- |
| 2xx with JSON                        | ok                   | returned                            |
| 401 / 403                            | ``ConfigurationError`` | raised at once: check credentials |
| other 4xx (400, 404, 405, 422, ...)  | ``ConfigurationError`` | raised at once: check path/params |
| 429                                  | ``TransientError``   | every worker pauses for Retry-After |
| 408, 5xx, timeout, connection reset  | ``TransientError``   | retried with exponential backoff    |
| 2xx that is not JSON                 | ``SyncSystemError``  | raised at once                      |

Retries use tenacity: exponential backoff with jitter, ``max_attempts`` for errors, while 429s
(which tell us how long to wait, or back off on their own count when they do not) are bounded only
by ``max_elapsed_seconds``; a wait that would end past that budget fails at once instead.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import requests
from pydantic import BaseModel, ConfigDict, Field
from requests.adapters import HTTPAdapter
from requests.exceptions import ChunkedEncodingError, ContentDecodingError
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from sync_assets.auth import ResolvedAuth
from sync_assets.errors import ConfigurationError, CredentialsRefused, SyncSystemError, TransientError
from sync_assets.home import sync_assets_home
from sync_assets.rate_limit import (
    AnnouncedBudget,
    RateLimitHeaders,
    RateLimitStore,
    SharedRateLimiter,
    announced_remaining,
    announced_reset_seconds,
    announced_wait,
)
from sync_assets.redaction import get_logger, mask, mask_url, strip_query_params
from sync_assets.secrets import resolve_text

if TYPE_CHECKING:
    from pathlib import Path

    from sync_assets.spec import ApiSource

log = get_logger(__name__)

USER_AGENT = "sync-assets/0.1 (+https://github.com/sync-assets)"


class RetryPolicy(BaseModel):
    """How hard to try before a transient failure fails the read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_attempts: int = Field(8, ge=1, description="Attempts per request for 5xx, timeouts, resets.")
    max_elapsed_seconds: float = Field(600, gt=0, description="Give up on a request after this long.")
    backoff_seconds: float = Field(0.5, ge=0, description="First backoff; doubles with each attempt.")
    max_backoff_seconds: float = Field(60, ge=0)
    connect_timeout_seconds: float = Field(10, gt=0)
    read_timeout_seconds: float = Field(60, gt=0)


@dataclass
class RequestStats:
    """Counters of one read (a window, a refresh); safe to share between its threads."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    seconds_waited: float = 0.0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def merge(self, other: RequestStats) -> None:
        self.add(**{f.name: getattr(other, f.name) for f in fields(other) if not f.name.startswith("_")})

    def as_dict(self) -> dict[str, float]:
        return {f.name: round(getattr(self, f.name), 3) for f in fields(self) if not f.name.startswith("_")}


@dataclass(frozen=True)
class FormBody:
    """A request body sent as a form (``application/x-www-form-urlencoded``) rather than as JSON."""

    fields: Mapping[str, Any]


Body = Mapping[str, Any] | FormBody | None


@dataclass(frozen=True)
class ApiResponse:
    """A decoded 2xx response, with what paginators and error messages need from it."""

    url: str
    body: Any
    headers: Mapping[str, str]
    links: Mapping[str, Mapping[str, str]]
    auth_params: frozenset[str]
    method: str = "GET"
    ignored: int | None = None
    """The status of an error response the stream ignores (``ignore_statuses``): no records, no next page."""

    @property
    def where(self) -> str:
        return f"{self.method} {mask_url(self.url)}"

    def strip_auth(self, url: str) -> str:
        """``url`` without our credentials, fit to be stored as a page token."""
        return strip_query_params(url, set(self.auth_params)) if self.auth_params else url


class HttpClient:
    """One per source per process; thread-safe, so a run's worker threads share its connections."""

    def __init__(
        self,
        base_url: str,
        auth: ResolvedAuth,
        limiter: SharedRateLimiter,
        retry: RetryPolicy,
        headers: Mapping[str, str] | None = None,
        verify_tls: bool = True,
        max_connections: int = 10,
        rate_limit_headers: RateLimitHeaders | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._auth_params = frozenset(auth.query_params)
        self._tokens = auth.tokens
        self._limiter = limiter
        self._retry = retry
        self._announces = rate_limit_headers or RateLimitHeaders()
        self._announced = AnnouncedBudget()
        self._session = requests.Session()
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._session.headers.update(headers or {})
        self._session.headers.update(auth.headers)
        self._session.verify = verify_tls
        # requests reads proxy and CA-bundle variables from the environment again on every request
        # (a scan of os.environ each time); read them once, here, for this API.
        self._session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if verify_tls and ca_bundle:
            self._session.verify = ca_bundle
        self._session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, max_connections))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._timeout = (retry.connect_timeout_seconds, retry.read_timeout_seconds)
        # Set by the first refusal of our credentials (401/403): from then on no thread sends a request.
        self._refused: str | None = None

    def url_for(self, path: str) -> str:
        return path if "://" in path else f"{self.base_url}/{path.lstrip('/')}"

    def request(self, url: str, params: Mapping[str, Any], stats: RequestStats,
                headers: Mapping[str, str] | None = None, method: str = "GET",
                body: Body = None, ignore: Collection[int] = (), retry: RetryPolicy | None = None) -> ApiResponse:
        """One request (a JSON ``body``, or a ``FormBody``) with the retry policy (``retry``, a stream's own, or
        the source's); raises a classified ``SyncError`` when it cannot succeed. A status in ``ignore`` is an
        answer with nothing in it."""
        policy = retry or self._retry
        counts = {"errors": 0, "throttles": 0}  # 5xx/timeouts/resets, and 429s: each backs off on its own

        def backoff(kind: str) -> float:
            counts[kind] += 1
            ceiling = min(policy.max_backoff_seconds, policy.backoff_seconds * 2.0 ** (counts[kind] - 1))
            return ceiling / 2 + random.uniform(0, ceiling / 2)

        def wait(state: RetryCallState) -> float:  # tenacity asks this first, then stop()
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, TransientError) and exc.status == 429:
                if exc.retry_after:  # the API said how long: wait that, and a little more
                    counts["throttles"] += 1
                    return exc.retry_after + random.uniform(0, 0.1 * exc.retry_after + 0.05)
                return backoff("throttles")
            return backoff("errors")

        def stop(state: RetryCallState) -> bool:
            if counts["errors"] >= policy.max_attempts:
                return True
            # Give up now rather than sleep past the budget (a Retry-After of an hour, say).
            return (state.seconds_since_start or 0.0) + state.upcoming_sleep > policy.max_elapsed_seconds

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            sleep = state.next_action.sleep if state.next_action else 0.0
            if isinstance(exc, TransientError) and exc.status == 429:
                self._limiter.pause(sleep)  # every worker of this API holds off, not just this one
            stats.add(retries=1, seconds_waited=sleep)
            log.warning("%s; retrying in %.2fs (attempt %d)", exc, sleep, state.attempt_number + 1)

        retrying = Retrying(
            stop=stop, wait=wait, retry=retry_if_exception_type(TransientError), before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(self._try_once, url, params, stats, headers, method, body, ignore)

    def _try_once(self, url: str, params: Mapping[str, Any], stats: RequestStats, headers: Mapping[str, str] | None,
                  method: str, body: Body, ignore: Collection[int]) -> ApiResponse:
        """One try of the retry loop: the request (again once, with a new token, if the token was refused),
        its answer read into records or into the error that decides whether to try again."""
        if self._refused is not None:  # another thread of this run was refused: knocking again cannot help
            raise CredentialsRefused(f"not sent: {self._refused}")
        response = self._within_budget(url, params, stats, headers, method, body)
        if response.status_code == 401 and self._tokens is not None:
            # The token expired early, or was revoked: fetch a new one, once; a 401 to that is a refusal.
            self._tokens.renew(response.request.headers)
            response = self._within_budget(url, params, stats, headers, method, body)
        return self._answer(response, stats, method, ignore)

    def _within_budget(self, url: str, params: Mapping[str, Any], stats: RequestStats,
                       headers: Mapping[str, str] | None, method: str, body: Body) -> requests.Response:
        """One request with its credentials, sent when the shared budget has a slot; what the API announces
        of its own budget in the answer is kept for the next one."""
        query = {**params, **self._auth.query_params} if self._auth_params else params
        if self._auth.body_fields:
            body = FormBody({**body.fields, **self._auth.body_fields}) if isinstance(body, FormBody) \
                else {**(body or {}), **self._auth.body_fields}
        if self._tokens is not None:
            headers = {**(headers or {}), **self._tokens.headers()}
        ticket, held = self._announced.take()  # from here on, the request is on its way
        try:
            # The shared budget's slot last, right before the send: the API counts the request when it
            # arrives, and any wait between the slot and the send (a token renewal, the announced budget)
            # would bunch it up with later slots there.
            waited = self._limiter.acquire()
        except BaseException:
            self._announced.unanswered()
            raise
        stats.add(seconds_waited=waited + held, requests=1)
        try:
            response = self._exchange(method, url, query, headers, body)
        except BaseException:  # no answer: what is left stays as the last answer said
            self._announced.unanswered()
            raise
        remaining = announced_remaining(response.headers, self._announces)
        reset = None if remaining is None else announced_reset_seconds(response.headers, self._announces)
        ok = response.status_code < 300
        self._announced.answered(ticket, remaining, ok, reset)
        if ok and remaining is not None and remaining <= 0:
            # The last request of the budget: every worker of this API, in every process, waits for the reset.
            announced = announced_wait(response.headers, self._announces, f"{method} {mask_url(url)}")
            if announced is not None and announced[0] > 0:
                self._limiter.pause(announced[0])
        return response

    def _exchange(self, method: str, url: str, query: Mapping[str, Any], headers: Mapping[str, str] | None,
                  body: Body) -> requests.Response:
        """The HTTP exchange itself; a transport failure becomes our error (retried, or a configuration one)."""
        sent = {"data": dict(body.fields)} if isinstance(body, FormBody) else {"json": body}
        try:
            return self._session.request(method, url, params=query, headers=headers or None, timeout=self._timeout,
                                         **sent)
        except requests.exceptions.InvalidURL as exc:  # before ConnectionError: it subclasses it
            raise ConfigurationError(f"invalid URL for {method} {mask_url(url)}: {mask(str(exc))}; "
                                     "check base_url and path") from None
        except (requests.Timeout, requests.ConnectionError, ChunkedEncodingError, ContentDecodingError) as exc:
            raise TransientError(f"{type(exc).__name__} on {method} {mask_url(url)}: the API did not answer in time, "
                                 "or the connection broke") from None

    def _answer(self, response: requests.Response, stats: RequestStats, method: str, ignore: Collection[int] = ()
                ) -> ApiResponse:
        stats.add(bytes=len(response.content))
        status = response.status_code
        if status in ignore:
            log.warning("%s %s on %s %s: ignored, as the stream's ignore_statuses say (no records, no next page)",
                        status, response.reason, method, mask_url(response.url))
            return ApiResponse(response.url, None, response.headers, response.links, self._auth_params, method,
                               ignored=status)
        if status < 300:
            try:
                decoded = json.loads(response.content)
            except ValueError:
                excerpt = mask(response.text)[:120]  # masked whole, then cut: a cut secret would leak its head
                raise SyncSystemError(
                    f"malformed JSON in the response of {method} {mask_url(response.url)} "
                    f"(status {status}, begins {excerpt!r}); the API sent something we cannot parse"
                ) from None
            return ApiResponse(response.url, decoded, response.headers, response.links, self._auth_params, method)
        where = f"{method} {mask_url(response.url)}"
        remaining = announced_remaining(response.headers, self._announces) if status == 403 else None
        if status == 429 or (remaining is not None and remaining <= 0):  # a 403 with a spent budget: GitHub's 429
            announced = announced_wait(response.headers, self._announces, where)
            said = announced[1] if announced else "no wait announced"
            stats.add(rate_limited=1)
            raise TransientError(
                f"{status} {response.reason} on {where}, rate limited ({said}); "
                "lower the source's rate_limits to stay under the API's budget",
                retry_after=announced[0] if announced else None,
                status=429,
            )
        if status in (401, 403):
            self._refused = (f"{status} {response.reason} on {where}: the API refused our credentials; "
                             "check the source's auth settings and the environment variables they read")
            raise CredentialsRefused(self._refused)
        if status == 408 or status >= 500:
            raise TransientError(f"{status} {response.reason} on {where}", status=status)
        raise ConfigurationError(
            f"{status} {response.reason} on {where}: {mask(response.text)[:200]}; "
            "check the stream's path and params"
        )

    def close(self) -> None:
        self._session.close()
        self._limiter.close()


def open_client(source: ApiSource, state_dir: Path | None = None) -> HttpClient:
    """The source's client: credentials resolved from the environment now, budget shared via the store.

    Beside the client it builds, so that what a client is made of is read in one file; the source's
    models are only its argument (``spec`` imports this module for ``RetryPolicy``)."""
    base_url = resolve_text(source.base_url, "base_url")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(f"base_url of source {source.name!r} must start with http:// or https://")
    if not source.verify_tls:
        log.warning("TLS certificates are not verified for source %s (verify_tls: false)", source.name)
    budget_store = source.rate_limit_store
    if "rate_limit_store" not in source.model_fields_set:
        budget_store = RateLimitStore.deployment_default() or budget_store
    limiter = SharedRateLimiter(
        source.rate_limit_key or source.name, source.rate_limits, budget_store,
        state_dir or sync_assets_home(), margin_seconds=source.rate_limit_margin_seconds,
    )
    try:
        auth = source.auth.resolve(limiter.board) if source.auth else None
    except BaseException:
        limiter.close()
        raise
    return HttpClient(
        base_url, auth or ResolvedAuth(), limiter, source.retry, headers=source.headers,
        verify_tls=source.verify_tls, max_connections=source.concurrency,
        rate_limit_headers=source.rate_limit_headers,
    )
