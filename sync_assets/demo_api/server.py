"""The HTTP side of the demo API: a real socket and keep-alive HTTP/1.1 from the standard library, so that
clients are tested over the wire, reusing connections as in production, and so that tests can start and
stop many servers quickly.

Every request except ``/stats`` goes through, in order: latency, auth, rate limit, fault injection, the
endpoint. ``GET /stats`` and ``POST /stats/reset`` expose and clear the counters that benchmarks assert on.
``python -m sync_assets.demo_api.server`` serves it from a shell (see :mod:`sync_assets.demo_api.command`).
"""

from __future__ import annotations

import contextlib
import math
import socket
import socketserver
import struct
import sys
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from sync_assets.demo_api.auth import Tokens, is_authorized, offered_credentials
from sync_assets.demo_api.config import DEFAULT_CONFIG, DemoApiConfig
from sync_assets.demo_api.endpoints import BODY_ENDPOINTS, Endpoint, Endpoints, route
from sync_assets.demo_api.faults import (
    BURST_SECONDS,
    FAULTS,
    SLOW_BODY_SECONDS,
    SLOW_FAULT_SECONDS,
    TRANSPORT_FAULTS,
    FaultStream,
    with_fault,
)
from sync_assets.demo_api.limits import Pauses, RateLimiter, announced_wait, budget_headers
from sync_assets.demo_api.protocol import BadParameter, NotFound, Query, Reply, Request, bad_request, json_reply
from sync_assets.demo_api.stats import Stats

_POLL_SECONDS = 0.02  # how fast serve_forever notices stop(); tests start and stop many servers


class _HttpServer(ThreadingHTTPServer):
    """Holds the per-server state the request handlers share, and tracks open connections so that
    stop() also ends idle keep-alive connections instead of leaving them served by orphan threads."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, config: DemoApiConfig) -> None:
        self.config = config
        self.stats = Stats(config.rate_limit)
        self.limiter = RateLimiter(config.rate_limit)
        self.faults = FaultStream(config)
        self.pauses = Pauses()
        self.endpoints = Endpoints(config, self.stats)
        self.tokens = Tokens(config, self.stats)
        self._connections: set[Any] = set()
        self._connections_lock = threading.Lock()
        super().__init__((config.host, config.port), _RequestHandler)

    def server_bind(self) -> None:
        """Skip HTTPServer's reverse DNS lookup of the bind address, which can stall start-up for seconds."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-response (a timeout, a stop()) is routine here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def reset_stats(self) -> None:
        self.stats.reset()
        self.limiter.reset()
        self.pauses.reset()


class _RequestHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 with an explicit Content-Length, so clients reuse connections as in production."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; Nagle would delay the body
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: a line per request would drown test and benchmark output."""

    def do_GET(self) -> None:
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # a GET may carry a body too
        self._handle("GET")

    def do_POST(self) -> None:
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # also keeps keep-alive in sync
        self._handle("POST")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        if (method, url.path) == ("GET", "/stats"):
            self._send(json_reply(200, self.server.stats.snapshot()))
        elif (method, url.path) == ("POST", "/stats/reset"):
            self.server.reset_stats()
            self._send(json_reply(200, self.server.stats.snapshot()))
        elif (method, url.path) in (("POST", "/oauth/token"), ("POST", "/login")) and self.server.config.token_lifetime:
            time.sleep(self.server.config.latency_ms / 1000)  # a token endpoint is no faster than the API
            self._send(self.server.tokens.reply(url.path, getattr(self, "body", b"")))
        else:
            path_key, endpoint, path_args = route(url.path)
            self.server.stats.count_request(path_key)
            reply = self._guarded(method, url.path, Query(url.query), endpoint, path_args, path_key)
            self.server.stats.count_status(reply.status)
            self._send(reply)

    def _guarded(
        self, method: str, path: str, query: Query, endpoint: Endpoint | None, path_args: tuple[str, ...],
        path_key: str,
    ) -> Reply:
        """Latency, auth, rate limit and random faults, in that order, before the endpoint itself."""
        server = self.server
        config = server.config
        received = time.monotonic()  # when the request arrived: the moment that counts against a pause
        if config.latency_ms:
            time.sleep(config.latency_ms / 1000)
        authorized = config.token is None or is_authorized(config.token, self.headers, query,
                                                           getattr(self, "body", b"")) or (
            config.token_lifetime > 0 and server.tokens.issued_and_valid(offered_credentials(self.headers, query)))
        if not authorized or (config.token is not None and server.tokens.revoked()):
            message = ("missing or invalid credentials: send the API token as a Bearer token, an X-API-Key "
                       "header, an api_key query parameter or form field, or a Basic auth password")
            return json_reply(401, {"error": "unauthorized", "message": message},
                              {"WWW-Authenticate": 'Bearer realm="demo"'})
        identity = config.token if config.token is not None else self.client_address[0]
        pause = server.pauses.in_pause(identity, received)
        if pause is not None:
            server.stats.count_in_pause(path_key, *pause)
        now = time.monotonic()
        server.stats.count_arrival(identity, now)
        wait = server.limiter.retry_after(identity, now)
        style = config.rate_limit_style
        if wait is not None:
            server.pauses.announce(identity, now, announced_wait(style, wait))
            if style == "retry-after":
                return json_reply(429, {"error": "rate_limited", "retry_after": round(wait, 3)},
                                  {"Retry-After": str(max(1, math.ceil(wait)))})
            return json_reply(403 if style == "github" else 429, {"error": "rate_limited"},
                              budget_headers(style, 0, wait))
        chaos = server.faults.chaos(path_key)
        if chaos is not None:
            server.stats.count_fault("5xx" if chaos.isdigit() else chaos)
        burst = server.pauses.burst(identity, now, BURST_SECONDS if chaos == "burst" else 0.0)
        if burst:
            server.pauses.announce(identity, now, math.ceil(burst))
            return json_reply(429, {"error": "rate_limited", "burst": True}, {"Retry-After": str(math.ceil(burst))})
        if chaos is not None and chaos.isdigit():
            return json_reply(int(chaos), {"error": "unavailable"})
        if server.faults.should_fail():
            return json_reply(500, {"error": "internal"})
        reply = self._answer(method, path, query, endpoint, path_args, chaos)
        budget = server.limiter.budget(identity, now)
        if budget is not None and style != "retry-after":
            reply.headers.update(budget_headers(style, *budget))
        return reply

    def _answer(
        self, method: str, path: str, query: Query, endpoint: Endpoint | None, path_args: tuple[str, ...],
        chaos: str | None = None,
    ) -> Reply:
        fault = query.get("_fault")
        if fault is not None and fault not in FAULTS:
            return bad_request(BadParameter("_fault", f"must be one of {', '.join(FAULTS)}"))
        fault = fault or chaos
        if fault == "500":
            return json_reply(500, {"error": "internal"})
        if fault == "429":  # throttled with no Retry-After: some APIs do that
            return json_reply(429, {"error": "rate_limited"})
        if endpoint is None:
            return json_reply(404, {"error": "not_found"})
        allowed = ("GET", "POST") if endpoint in BODY_ENDPOINTS else ("GET",)
        if method not in allowed:
            return json_reply(405, {"error": "method_not_allowed"}, {"Allow": ", ".join(allowed)})
        if fault == "slow":
            time.sleep(SLOW_FAULT_SECONDS)
        try:
            page = endpoint(self.server.endpoints, Request(path, path_args, query, self._base_url(), fault,
                                                           self.headers, getattr(self, "body", b"")))
        except BadParameter as error:
            return bad_request(error)
        except NotFound:
            return json_reply(404, {"error": "not_found"})
        reply = with_fault(page, fault)
        reply.transport = fault if fault in TRANSPORT_FAULTS else None
        return reply

    def _base_url(self) -> str:
        """Next-page links point where the client connected, which may differ from the bind address."""
        host = self.headers.get("Host") or f"{self.server.server_name}:{self.server.server_port}"
        return f"http://{host}"

    def _send(self, reply: Reply) -> None:
        if reply.transport == "reset":  # no answer at all: the connection is reset (RST, not FIN)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.transport == "truncated":  # the promised length, half of it sent, then the connection closed
            self.wfile.write(reply.body[: len(reply.body) // 2])
            self.close_connection = True
        elif reply.transport == "slow_body":
            quarter = max(1, len(reply.body) // 4 + 1)
            for start in range(0, len(reply.body), quarter):
                self.wfile.write(reply.body[start:start + quarter])
                time.sleep(SLOW_BODY_SECONDS / 4)
        else:
            self.wfile.write(reply.body)


# --- public server object ---------------------------------------------------------------------------------


class DemoApi:
    """The demo API bound to its socket at construction, so ``url`` is known before ``start()``."""

    def __init__(self, config: DemoApiConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self._server = _HttpServer(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._server.server_name}:{self._server.server_port}"

    def start(self) -> DemoApi:
        """Serve from a daemon thread, for tests and in-process benchmarks."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(_POLL_SECONDS,), name=f"demo-api {self.url}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from the calling thread until KeyboardInterrupt, for the CLI."""
        self._server.serve_forever(_POLL_SECONDS)

    def set_latency(self, latency_ms: float) -> None:
        """Answer with this latency from the next request on, as a real API slows down or recovers;
        requests already waiting keep the latency they began with."""
        self.config = self._server.config = replace(self.config, latency_ms=latency_ms)

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.close_connections()
        self._server.server_close()

    def stats(self) -> dict[str, Any]:
        return self._server.stats.snapshot()

    def reset_stats(self) -> None:
        self._server.reset_stats()

    def __enter__(self) -> DemoApi:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":  # the command line lives in its own module, which loads this one under its own name
    from sync_assets.demo_api.command import main

    sys.exit(main())
