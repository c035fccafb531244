"""Serving the demo API from a shell, as ``sync-assets demo-api`` or ``python -m sync_assets.demo_api.server``:
the quickstart, the docs' examples and the benchmarks run it as a process of its own, so that clients meet
it over the network as they would a real API. Its options map one to one onto :class:`DemoApiConfig`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import UTC, date, datetime, timedelta
from types import FrameType
from typing import NoReturn

from sync_assets.demo_api.config import DEFAULT_CONFIG, RATE_LIMIT_STYLES, DemoApiConfig, parse_rate_limit
from sync_assets.demo_api.server import DemoApi

DEFAULT_CLI_PORT = 8765


def _rate_limit_argument(text: str) -> tuple[int, float]:
    """argparse only shows the message of an ArgumentTypeError; a ValueError becomes a generic error."""
    try:
        return parse_rate_limit(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _year_start_argument(text: str) -> date:
    if text == "recent":
        return datetime.now(UTC).date() - timedelta(days=365)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD or recent, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DEFAULT_CONFIG
    parser.add_argument("--host", default=defaults.host, help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_CLI_PORT,
                        help="port to bind, 0 picks a free one (default: %(default)s)")
    parser.add_argument("--token", default=None,
                        help="require this token (Bearer, X-API-Key, api_key=... or Basic password)")
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms,
                        help="delay added before every response (default: %(default)s)")
    parser.add_argument("--rate-limit", type=_rate_limit_argument, default=None, metavar="N/SECONDS",
                        help="allow N requests per moving window of SECONDS per client, e.g. 10/1")
    parser.add_argument("--fail-rate", type=float, default=defaults.fail_rate, metavar="F",
                        help="share of requests answered 500, reproducible from the seed")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the data and of the faults (default: %(default)s)")
    for name in ("customers", "orders", "events", "surveys"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name),
                            help=f"number of {name} (default: %(default)s)")
    parser.add_argument("--survey-year-start", type=_year_start_argument, default=defaults.survey_year_start,
                        metavar="DATE|recent", help="first of the 366 days over which surveys are modified; recent: "
                                                    "the year up to today (default: %(default)s)")
    parser.add_argument("--rate-limit-style", choices=RATE_LIMIT_STYLES, default=defaults.rate_limit_style,
                        help="how the budget is announced (default: %(default)s)")
    parser.add_argument("--revoke-after", type=int, default=0, metavar="N",
                        help="refuse the token (401) after N accepted requests, as a revoked credential (0: never)")
    parser.add_argument("--cursor-cycle", type=int, default=0, metavar="N",
                        help="from page N on, the customers' next cursor points one page back (0: never)")
    parser.add_argument("--token-lifetime", type=float, default=0.0, metavar="SECONDS",
                        help="serve POST /oauth/token and POST /login, handing out tokens that live this long")
    parser.add_argument("--search-max-results", type=int, default=0, metavar="N",
                        help="POST /v3/surveys/search finds at most N surveys per query, as search endpoints do")
    parser.add_argument("--rotate-refresh-tokens", action="store_true",
                        help="with --token-lifetime, each refresh token grant answers a new refresh token and the "
                             "old one stops working")
    parser.add_argument("--chaos", action="store_true",
                        help="mix faults into every endpoint, reproducibly from --seed: 5xx at 20%%, bursts of "
                             "429s, connection resets, cut-off and trickling bodies")
    parser.add_argument("--chaos-cycles", action="store_true",
                        help="with --chaos, also point some customers' next cursors one page back")


def _config_from_args(args: argparse.Namespace) -> DemoApiConfig:
    return DemoApiConfig(
        host=args.host, port=args.port, token=args.token, latency_ms=args.latency_ms,
        rate_limit=args.rate_limit, fail_rate=args.fail_rate, seed=args.seed,
        customers=args.customers, orders=args.orders, events=args.events, surveys=args.surveys,
        survey_year_start=args.survey_year_start,
        cursor_cycle=args.cursor_cycle, revoke_after=args.revoke_after, rate_limit_style=args.rate_limit_style,
        chaos=args.chaos, chaos_cycles=args.chaos_cycles, token_lifetime=args.token_lifetime,
        search_max_results=args.search_max_results, rotate_refresh_tokens=args.rotate_refresh_tokens,
    )


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM (e.g. from a process manager) stops the server the same clean way Ctrl-C does."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM. The single stdout line tells scripts which port was picked."""
    try:
        api = DemoApi(_config_from_args(args))
    except (ValueError, OSError) as error:
        print(f"demo API: cannot start: {error}", file=sys.stderr)
        return 2
    print(f"demo API listening on {api.url}", flush=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        api.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        api.stop()
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m sync_assets.demo_api.server") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Serve the sync-assets demo HTTP API.")
    add_arguments(parser)
    return run(parser.parse_args(argv))

