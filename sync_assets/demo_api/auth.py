"""Credentials, taken in every style real APIs accept them (a Bearer token, an ``X-API-Key`` header, an
``api_key`` query parameter or form field, a Basic auth password), and the short-lived tokens that some APIs
hand out, expire, rotate and revoke, so that a client's auth, and its renewal when a token stops working,
are tested against what providers do.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import random
import threading
import time
from email.message import Message
from urllib.parse import parse_qsl

from sync_assets.demo_api.config import DemoApiConfig
from sync_assets.demo_api.protocol import Query, Reply, form_fields, json_reply
from sync_assets.demo_api.stats import Stats


def offered_credentials(headers: Message, query: Query, body: bytes = b"") -> list[str]:
    """Every credential the request offers, in any of the styles real APIs accept (a form body's ``api_key``
    too, as Canny's API takes it)."""
    form = form_fields(headers, body) or {}
    offered = [value for value in (headers.get("X-API-Key"), query.get("api_key"), form.get("api_key"))
               if value is not None]
    scheme, _, value = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer":
        offered.append(value.strip())
    elif scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):  # undecodable: offers nothing
            offered.append(base64.b64decode(value.strip(), validate=True).decode().partition(":")[2])
    return offered


def is_authorized(token: str, headers: Message, query: Query, body: bytes = b"") -> bool:
    offered = offered_credentials(headers, query, body)
    return any(hmac.compare_digest(credential.encode(), token.encode()) for credential in offered)


class Tokens:
    """The tokens handed out by ``POST /oauth/token`` and ``POST /login``, the one refresh token that works
    when they rotate, and the count of accepted requests after which the configured token is revoked."""

    def __init__(self, config: DemoApiConfig, stats: Stats) -> None:
        self.config, self.stats = config, stats
        self._accepted, self._accepted_lock = 0, threading.Lock()
        self._issued: dict[str, float] = {}  # token -> when it expires (monotonic)
        self._refresh_token = self.config.token  # the one refresh token that works, when they rotate

    def reply(self, path: str, body: bytes) -> Reply:
        """The token endpoints: credentials in, a short-lived token out (never through the data endpoints' auth)."""
        secret = self.config.token
        self.stats.count_token_request()
        if path == "/login":
            try:
                login = json.loads(body or b"{}")
            except ValueError:
                login = {}
            if not (isinstance(login, dict) and login.get("username") == "demo" and login.get("password") == secret):
                return json_reply(401, {"error": "invalid_login"})
            return json_reply(200, {"session": {"token": self.issue_token()},
                                    "expires_in": self.config.token_lifetime})
        form = dict(parse_qsl(body.decode()))
        grant = form.get("grant_type")
        rotated = None
        if grant == "refresh_token" and self.config.rotate_refresh_tokens:
            rotated = self.exchange_refresh_token(form.get("refresh_token"))
            if rotated is None:  # used already, or never issued: what rotating providers answer
                return json_reply(400, {"error": "invalid_grant", "error_description": "refresh token is not valid"})
        good = rotated is not None or (grant == "client_credentials" and form.get("client_id") == "demo-client"
                                       and form.get("client_secret") == secret) or (
            grant == "refresh_token" and form.get("refresh_token") == secret)
        if not good:
            return json_reply(400 if grant not in ("client_credentials", "refresh_token") else 401,
                              {"error": "invalid_client" if grant else "unsupported_grant_type"})
        answer = {"access_token": self.issue_token(), "token_type": "bearer",
                  "expires_in": self.config.token_lifetime}
        return json_reply(200, {**answer, "refresh_token": rotated} if rotated else answer)

    def exchange_refresh_token(self, offered: str | None) -> str | None:
        """The next refresh token if ``offered`` is the current one (it then stops working); else None."""
        with self._accepted_lock:
            if offered is None or offered != self._refresh_token:
                return None
            self._refresh_token = f"refresh-{random.getrandbits(64):016x}"
            return self._refresh_token

    def issue_token(self) -> str:
        token = f"issued-{random.getrandbits(64):016x}"
        with self._accepted_lock:
            self._issued[token] = time.monotonic() + self.config.token_lifetime
        self.stats.count_token()
        return token

    def issued_and_valid(self, offered: list[str]) -> bool:
        now = time.monotonic()
        with self._accepted_lock:
            return any(self._issued.get(token, 0.0) > now for token in offered)

    def revoked(self) -> bool:
        """Whether the token is refused from now on (``revoke_after`` accepted requests were served)."""
        limit = self.config.revoke_after
        if not limit:
            return False
        with self._accepted_lock:
            self._accepted += 1
            return self._accepted > limit
