"""Jinja as Airbyte's CDK evaluates it: a sandboxed environment, their macros and filters, their
aliases, and their habit of reading a rendered string back as a Python literal.

Evaluating the same way matters more than evaluating elegantly: ``"{{ config['page_size'] }}"``
renders to the text ``"50"`` and the CDK sends the integer 50; a ``stop_condition`` that renders
``"False"`` is false. ``Template.variables`` lets the translation see which values depend on the
request (``stream_slice``, ``response``, ...) and which can be fixed once from ``config``.
"""

from __future__ import annotations

import ast
import base64
import builtins
import hashlib
import hmac as hmac_lib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

from jinja2 import meta
from jinja2.exceptions import TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import TypeAdapter, ValidationError

from sync_assets.errors import ConfigurationError

_DURATION = TypeAdapter(timedelta)

# The CDK's aliases: one value, three names.
ALIASES = {"stream_interval": "stream_slice", "stream_partition": "stream_slice"}


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration (``P1D``, ``PT1H``, ``P2W``), as pydantic reads it."""
    try:
        return _DURATION.validate_python(text)
    except ValidationError:
        raise ConfigurationError(f"{text!r} is not an ISO 8601 duration; write e.g. P30D or PT1H") from None


def str_to_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace(" ", "T", 1) if len(text.strip()) > 10 else text.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now_utc() -> datetime:
    return datetime.now(UTC)


def _today_utc() -> date:
    return datetime.now(UTC).date()


def _today_with_timezone(timezone: str) -> date:
    return datetime.now(ZoneInfo(timezone)).date()


def _timestamp(value: float | str) -> int | float:
    return int(value) if isinstance(value, int | float) else str_to_datetime(value).timestamp()


def _day_delta(num_days: int, format: str = "%Y-%m-%dT%H:%M:%S.%f%z") -> str:
    return (datetime.now(UTC) + timedelta(days=num_days)).strftime(format)


def format_datetime(value: str | datetime | int, format: str, input_format: str | None = None) -> str:
    if isinstance(value, datetime):
        return value.strftime(format)
    if isinstance(value, int):
        parsed = datetime.fromtimestamp(value, UTC)
    else:
        parsed = datetime.strptime(value, input_format) if input_format else str_to_datetime(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return render_datetime(parsed, format)


def render_datetime(value: datetime, format: str) -> str:
    """The CDK's ``DatetimeParser.format``: ``%s`` (epoch seconds), ``%ms`` (epoch ms) and ``%s_as_float``
    mean what they say in UTC (Python's ``%s`` would use the machine's time zone); anything else is strftime."""
    if format == "%s":
        return str(int(value.timestamp()))
    if format == "%s_as_float":
        return str(float(value.timestamp()))
    if format == "%ms":
        return str(int(value.timestamp() * 1000))
    if "%_ms" in format:
        format = format.replace("%_ms", f"{value.microsecond // 1000:03d}")
    return value.strftime(format)


def _hash(value: Any, hash_type: str = "md5", salt: str | None = None) -> str:
    function = getattr(hashlib, hash_type, None)
    if function is None:
        raise AttributeError(f"No hashing function named {hash_type}")
    digest = function()
    digest.update(str(value).encode())
    if salt:
        digest.update(str(salt).encode())
    return str(digest.hexdigest())


def _string(value: Any) -> str:
    return value if isinstance(value, str) else f'"""{json.dumps(value)}"""'


def _regex_search(value: str, regex: str) -> str:
    match = re.search(regex, value)
    return match.group(1) if match and match.groups() else ""


def _hmac(value: Any, key: str, hash_type: str = "sha256") -> str:
    if hash_type != "sha256":
        raise ValueError(f"Hash type '{hash_type}' is not allowed. Allowed types: sha256")
    return hmac_lib.new(str(key).encode(), str(value).encode(), hashlib.sha256).hexdigest()


MACROS: dict[str, Any] = {
    "now_utc": _now_utc, "today_utc": _today_utc, "today_with_timezone": _today_with_timezone,
    "timestamp": _timestamp, "max": builtins.max, "min": builtins.min, "day_delta": _day_delta,
    "duration": parse_duration, "format_datetime": format_datetime, "str_to_datetime": str_to_datetime,
    "sanitize_url": quote_plus, "camel_case_to_snake_case": lambda v: re.sub(r"(?<!^)(?=[A-Z])", "_", v).lower(),
    "generate_uuid": lambda: str(uuid.uuid4()),
}
FILTERS: dict[str, Any] = {
    "hash": _hash,
    "base64encode": lambda v: base64.b64encode(v.encode()).decode(),
    "base64decode": lambda v: base64.b64decode(v.encode()).decode(),
    "base64binascii_decode": lambda v: base64.standard_b64decode(v.encode("ascii")).decode("ascii"),
    "string": _string, "regex_search": _regex_search, "regex_replace": lambda v, r, s: re.sub(r, s, v),
    "hmac": _hmac,
}

_ENVIRONMENT = SandboxedEnvironment()
_ENVIRONMENT.filters.update(FILTERS)
_ENVIRONMENT.globals.update(MACROS)
_ENVIRONMENT.globals.pop("range", None)  # as in the CDK: an easy way to burn CPU


class TemplateFailed(ValueError):
    """A template raised while it was evaluated (the message names it and where it is)."""


class Template:
    """One interpolated value of a manifest. Plain text is a template too (it renders as itself)."""

    def __init__(self, text: str, where: str = "") -> None:
        self.text = text
        self.where = where
        try:
            self._compiled = _compile(text) if "{" in text else None
            self.variables = _variables(text) if "{" in text else frozenset()
        except TemplateError as exc:
            raise ConfigurationError(f"{where or 'a value'}: {text!r} is not valid Jinja: {exc}") from None

    def depends_on(self, *names: str) -> bool:
        return bool(self.variables & set(names))

    def render(self, context: Mapping[str, Any], default: str | None = None) -> str:
        """The rendered text (empty when an undefined value was reached, as in the CDK)."""
        if self._compiled is None:
            return self.text
        context = {**context}
        for alias, name in ALIASES.items():
            if name in context:
                context[alias] = context[name]
        missing = self.variables - set(context) - set(MACROS)
        if missing:
            raise ConfigurationError(f"{self.where or 'a value'}: {self.text!r} uses {', '.join(sorted(missing))}, "
                                     "which this value cannot see")
        try:
            rendered = str(self._compiled.render(context))
        except UndefinedError:
            rendered = ""
        except Exception as exc:  # a template's own mistake: a type error, a bad macro argument
            raise TemplateFailed(f"{self.where or 'a value'}: {self.text!r} failed: {type(exc).__name__}: "
                                 f"{exc}") from exc
        if not rendered and default is not None:
            return Template(default, self.where).render(context)
        return rendered

    def eval(self, context: Mapping[str, Any], default: str | None = None) -> Any:
        """The value as the CDK returns it: the rendered text read as a Python literal when it is one."""
        return literal(self.render(context, default))


def literal(text: str) -> Any:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return text if isinstance(value, complex) else value


@cache
def _compile(text: str) -> Any:
    return _ENVIRONMENT.from_string(text)


@cache
def _variables(text: str) -> frozenset[str]:
    names = meta.find_undeclared_variables(_ENVIRONMENT.parse(text))
    return frozenset(names - set(MACROS) - set(_ENVIRONMENT.globals))
