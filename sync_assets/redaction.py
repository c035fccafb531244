"""One place that keeps secrets out of logs, errors, metadata and stored state.

Secrets reach the engine in two ways: as values resolved from environment variables (tokens,
passwords) and as query parameters in URLs (``?api_key=...``, possibly echoed back by an API in its
next-page links). Both are masked here: every resolved secret value is registered once, and
``mask`` replaces it wherever it shows up; ``mask_url`` also hides the values of query parameters
whose names look secret, whether or not we know the value. A logging filter applies ``mask`` to
every record of the engine's loggers (``get_logger``), so a careless f-string cannot leak a token
either.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query parameter names that carry credentials in the APIs we meet in practice.
SECRET_PARAM = re.compile(
    r"(key|token|secret|password|passwd|signature|sig|auth|credential|session)", re.IGNORECASE
)

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(value: str) -> None:
    """Remember a secret so that ``mask`` hides it from now on (short values would mask noise).

    Its URL-encoded forms too: a key holding ``+``, ``/`` or ``=`` shows up encoded in request URLs.
    """
    global _secrets
    if len(value) < 4:
        return
    with _lock:
        _secrets = _secrets | {value, quote(value, safe=""), quote_plus(value)}


def mask(text: str) -> str:
    """Replace every registered secret in ``text``, longest first so prefixes cannot leak the rest."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_url(url: str) -> str:
    """A URL fit for a log line: secret-looking query values and userinfo replaced by ``***``."""
    return mask(url_without_credentials(url))


def url_without_credentials(url: str) -> str:
    """``url`` with its userinfo and secret-looking query values replaced by ``***``, whatever secrets this
    process has registered: the same string in every process, fit to name a shared place (a run's store)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = urlencode(
        [(k, MASK if SECRET_PARAM.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def strip_query_params(url: str, names: set[str]) -> str:
    """``url`` without the given query parameters: used before a URL is stored as a checkpoint."""
    parts = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in names])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class RedactingFilter(logging.Filter):
    """Masks registered secrets in the final text of every log record passing through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = mask(record.getMessage())
            record.args = None
        return True


def get_logger(name: str) -> logging.Logger:
    """The engine's loggers: each carries the filter, since logger filters do not apply to children."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
