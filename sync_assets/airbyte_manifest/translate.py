"""A resolved manifest and its config, translated onto the engine's own models (``ApiSource``).

Values are settled as early as their inputs allow. Templates over ``config`` and ``parameters`` are
evaluated once, here. Templates that name the request (``stream_slice``, ``stream_partition``,
``stream_interval``, ``next_page_token``) are rendered *symbolically*: the slice's window bounds and
partition fields render as markers, and a value that is exactly one marker becomes the engine setting
that says the same thing (a window's start parameter, a ``{parent[id]}`` placeholder). The few values
that must stay Jinja per response or per record go to ``parts``. Anything else is refused with
``Unsupported``, which names the stream, the place in the manifest and the component, so that no
manifest ever runs with silently different behaviour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from sync_assets.airbyte_manifest.interpolation import (
    Template,
    TemplateFailed,
    literal,
    parse_duration,
    str_to_datetime,
)
from sync_assets.airbyte_manifest.resolve import PARAMETERS, read_manifest
from sync_assets.errors import ConfigurationError
from sync_assets.redaction import register_secret
from sync_assets.secrets import Env
from sync_assets.spec import ApiSource, source_from_dict
from sync_assets.windows import as_utc

SUPPORTED = (
    "DeclarativeSource, DeclarativeStream, SimpleRetriever, HttpRequester, RecordSelector, DpathExtractor, "
    "RecordFilter, InlineSchemaLoader, DefaultPaginator (CursorPagination, PageIncrement, OffsetIncrement), "
    "NoPagination, RequestOption (request_parameter, header, body_json), RequestPath, DatetimeBasedCursor, "
    "MinMaxDatetime, SubstreamPartitionRouter with one ParentStreamConfig, ListPartitionRouters (on full "
    "refreshes), ApiKeyAuthenticator, "
    "BearerAuthenticator, BasicHttpAuthenticator, OAuthAuthenticator (refresh_token_updater included), "
    "SelectiveAuthenticator, NoAuth, DefaultErrorHandler, CompositeErrorHandler, HttpResponseFilter "
    "(RETRY, RATE_LIMITED, FAIL, IGNORE), ExponentialBackoffStrategy, ConstantBackoffStrategy, WaitTimeFromHeader, "
    "AddFields, RemoveFields, KeysToLower, Spec, CheckStream, $ref, $parameters"
)

# What a slice's window bounds and a page token render as while a value is translated.
_START, _END, _TOKEN = "\x00start\x00", "\x00end\x00", "\x00token\x00"
_TOKEN_PARAM = "next_page_token"  # the engine's name for a page token that a body template places itself
# Where a RequestOption (by its inject_into) or a requester's mapping sends its values; "form" is a body
# sent as a form (request_body_data), which the engine models as body_format: form.
_PLACES = {"request_parameter": "query", "header": "header", "body_json": "body", "body_data": "form",
           "request_parameters": "query", "request_headers": "header", "request_body_json": "body",
           "request_body_data": "form"}
_SECRET = re.compile("\x00secret:([A-Za-z_][A-Za-z0-9_]*)\x00")
_MARKER = re.compile("\x00[^\x00]*\x00")
_NOW_MACROS = ("now_utc", "today_utc", "day_delta")


class UnreadableDate(ConfigurationError):
    """A date the manifest reads (a window's start or end, from the config) that is not in its format."""

    def __init__(self, where: str, text: str, fmt: str) -> None:
        super().__init__(f"{where}: {text!r} is not a date in the format {fmt!r}; fix the config value it comes "
                         "from")
        self.text, self.fmt = text, fmt


class Unsupported(ConfigurationError):
    """Manifest parts this translation does not support (yet): which, where, and what is supported. One per
    stream that has any (the first met in it), so that a manifest's whole list is seen at once."""

    def __init__(self, what: str, where: str, *more: Unsupported) -> None:
        self.blockers: list[tuple[str, str]] = [(what, where), *(b for other in more for b in other.blockers)]
        lines = [f"{place}: {thing} is not supported" for thing, place in self.blockers]
        super().__init__("; ".join(lines) + f"; supported: {SUPPORTED}")
        self.what, self.where = what, where


def load_manifest(path: str | Path, config: Mapping[str, Any] | None = None, name: str | None = None,
                  settings: Mapping[str, Any] | None = None) -> ApiSource:
    """The source a connector's ``manifest.yaml`` declares, for ``config`` (its spec's fields).

    ``settings`` are source settings of ours (``rate_limits``, ``concurrency``, ``retry``...) that win over
    what the manifest says: an API's budget is rarely in its manifest.

    ``name`` defaults to the connector's folder without ``source-`` (``source-rootly/manifest.yaml`` is
    ``rootly``). Secrets may be given as Dagster ``EnvVar``s (or ``{"env": NAME}``): they are read when a
    client is built, or (for a credential that a template wraps in more text) once, here, and masked.
    """
    path = Path(path)
    manifest = read_manifest(path)
    default = path.resolve().parent.name.removeprefix("source-") if path.name == "manifest.yaml" else path.stem
    return translate(manifest, config or {}, name or _safe_name(default), origin=str(path), settings=settings)


def translate(manifest: dict[str, Any], config: Mapping[str, Any], name: str, origin: str = "<manifest>",
              settings: Mapping[str, Any] | None = None) -> ApiSource:
    values = _Config(manifest, config, origin)
    streams = manifest.get("streams") or []
    if not isinstance(streams, list) or not streams:
        raise ConfigurationError(f"{origin} declares no streams")
    if manifest.get("dynamic_streams"):
        raise Unsupported("dynamic_streams (streams generated from an API response)", origin)
    translator = _Translator(values, origin, {_stream_name(s, origin): s for s in streams})
    translated, refused = [], []
    for stream in streams:
        try:
            translated.append(translator.stream(stream))
        except Unsupported as exc:
            refused.append(exc)
    if refused:
        raise Unsupported(refused[0].what, refused[0].where, *refused[1:])
    source = {"name": name, "base_url": translator.base_url, "streams": translated, **translator.source_settings,
              **(settings or {})}
    return source_from_dict(source, origin=origin)


def _safe_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "manifest"
    return name if name[0].isalpha() else f"s_{name}"


def _stream_name(stream: Any, origin: str) -> str:
    if not isinstance(stream, dict) or not isinstance(stream.get("name"), str):
        raise ConfigurationError(f"{origin}: every stream needs a name")
    return str(stream["name"])


class _Config:
    """The connection config, checked against the manifest's spec; secrets kept out of rendered text."""

    def __init__(self, manifest: dict[str, Any], given: Mapping[str, Any], origin: str) -> None:
        spec = (manifest.get("spec") or {}).get("connection_specification") or {}
        properties: dict[str, Any] = spec.get("properties") or {}
        missing = [key for key in spec.get("required") or [] if key not in given
                   and "default" not in (properties.get(key) or {})]
        if missing:
            titles = {key: (properties.get(key) or {}).get("title") or "no title" for key in missing}
            described = ", ".join(f"{key} ({title})" for key, title in titles.items())
            raise ConfigurationError(f"{origin}: the config lacks {described}, which the manifest's spec requires; "
                                     "pass them in config=..., secrets as EnvVar('NAME')")
        secret_keys = {key for key, prop in properties.items() if _holds_secret(prop)}
        values = {key: prop["default"] for key, prop in properties.items() if isinstance(prop, dict)
                  and "default" in prop}
        values.update(given)
        for key in secret_keys & set(values):
            _register_literals(values[key], properties[key])  # a literal secret: masked wherever it could show
        # secrets from the environment stay markers, read only where they are sent; other values are settled now
        self.symbolic = {key: self._symbol(value) if key in secret_keys else self._resolved(value, key)
                         for key, value in values.items()}
        # what may be handed to per-record templates: no secret, literal or from the environment
        self.plain = {key: value for key, value in self.symbolic.items()
                      if key not in secret_keys and not _holds_marker(value)}

    @staticmethod
    def _env_name(value: Any) -> str | None:
        env = getattr(value, "env_var_name", None) or (value.env if isinstance(value, Env) else None)
        if env is None and isinstance(value, Mapping) and set(value) <= {"env", "default"} and "env" in value:
            env = value["env"]
        return env if isinstance(env, str) else None

    @staticmethod
    def _symbol(value: Any) -> Any:
        env = _Config._env_name(value)
        if env is not None:
            return f"\x00secret:{env}\x00"
        if isinstance(value, Mapping):
            return {key: _Config._symbol(item) for key, item in value.items()}
        return value

    @staticmethod
    def _resolved(value: Any, key: str) -> Any:
        env = _Config._env_name(value)
        if env is not None:
            default = value.get("default") if isinstance(value, Mapping) else None
            return Env(env=env, default=default).resolve(f"the manifest's config field {key}")
        if isinstance(value, Mapping):
            return {name: _Config._resolved(item, f"{key}.{name}") for name, item in value.items()}
        return value


def _holds_secret(prop: Any) -> bool:
    """Whether a spec property is a secret, or an object (or one of its ``oneOf`` options) that holds one."""
    if not isinstance(prop, dict):
        return False
    nested = [*(prop.get("properties") or {}).values(), *(prop.get("oneOf") or []), *(prop.get("anyOf") or [])]
    return bool(prop.get("airbyte_secret")) or any(_holds_secret(item) for item in nested)


def _register_literals(value: Any, prop: Any) -> None:
    if isinstance(value, str) and getattr(value, "env_var_name", None) is None and prop.get("airbyte_secret"):
        register_secret(value)
    elif isinstance(value, Mapping):
        options = [prop, *(prop.get("oneOf") or []), *(prop.get("anyOf") or [])]
        for key, item in value.items():
            for option in options:
                inner = (option.get("properties") or {}).get(key)
                if isinstance(inner, dict):
                    _register_literals(item, inner)


def _holds_marker(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_MARKER.search(value))
    if isinstance(value, Mapping):
        return any(_holds_marker(item) for item in value.values())
    return False


class _Translator:
    def __init__(self, config: _Config, origin: str, streams: dict[str, dict[str, Any]]) -> None:
        self.config, self.origin, self.manifest_streams = config, origin, streams
        self.names = {name: _safe_name(name) for name in streams}
        self._base_url: str | None = None
        self._auth: tuple[str, Any] | None = None
        self._retry: tuple[str, dict[str, Any]] | None = None

    # --- the source's shared settings ------------------------------------------------------------

    @property
    def base_url(self) -> Any:
        return self._base_url or ""

    @property
    def source_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        if self._auth is not None and self._auth[1] is not None:
            settings["auth"] = self._auth[1]
        if self._retry is not None:
            settings.update(self._retry[1])
        return settings

    def _shared(self, attribute: str, value: Any, where: str, what: str) -> None:
        """Base URL, auth and retries are the source's in the engine: streams that differ are refused."""
        held = getattr(self, attribute)
        if held is None:
            setattr(self, attribute, (where, value) if attribute != "_base_url" else value)
            return
        if (held[1] if attribute != "_base_url" else held) != value:
            raise Unsupported(f"a {what} that differs from stream to stream", where)

    # --- values ------------------------------------------------------------------------------------

    def render(self, text: Any, where: str, parameters: Mapping[str, Any], request: Mapping[str, Any] | None = None
               ) -> str:
        """``text`` with config and parameters filled in; request variables only as markers (``request``)."""
        if not isinstance(text, str):
            return "" if text is None else str(text)
        template = Template(text, where)
        allowed = {"config", "parameters", *(request or {})}
        if "stream_interval" in template.variables or "stream_partition" in template.variables:
            allowed |= {"stream_interval", "stream_partition"} if request and "stream_slice" in request else set()
        other = template.variables - allowed
        if other:
            raise Unsupported(f"{text!r}, a value that depends on {', '.join(sorted(other))} here,", where)
        try:
            return template.render({"config": self.config.symbolic, "parameters": parameters, **(request or {})})
        except TemplateFailed as exc:
            if template.variables & {"stream_slice", "stream_interval", "stream_partition", "next_page_token"}:
                raise Unsupported(f"{text!r}, a value computed from the request's slice or page token,",
                                  where) from None
            raise ConfigurationError(str(exc)) from None

    def plain(self, text: Any, where: str, parameters: Mapping[str, Any]) -> str:
        """A rendered value that must not hold a secret or a marker (a path, a field name)."""
        value = self.render(text, where, parameters)
        if _MARKER.search(value):
            value = self._resolved_secret(value, where)
        return value

    def secret(self, text: Any, where: str, parameters: Mapping[str, Any]) -> Any:
        """A credential: an ``Env`` when it is exactly one environment secret, else the text, hidden."""
        value = self.render(text, where, parameters)
        exact = _SECRET.fullmatch(value)
        if exact:
            return Env(env=exact.group(1)).model_dump()
        return SecretStr(self._resolved_secret(value, where))

    def _resolved_secret(self, value: str, where: str) -> str:
        def read(match: re.Match[str]) -> str:
            secret = Env(env=match.group(1)).resolve(where)
            register_secret(secret)
            return secret

        return _SECRET.sub(read, value)

    # --- streams -------------------------------------------------------------------------------------

    def stream(self, component: dict[str, Any]) -> dict[str, Any]:
        name = _stream_name(component, self.origin)
        where = f"{self.origin}: stream {name}"
        self._expect(component, "DeclarativeStream", where)
        parameters = component.get(PARAMETERS) or {}
        retriever = component.get("retriever") or {}
        self._expect(retriever, "SimpleRetriever", f"{where}.retriever")
        for unsupported in ("state_migrations", "file_uploader"):
            if component.get(unsupported):
                raise Unsupported(unsupported, f"{where}.{unsupported}")
        for unsupported in ("ignore_stream_slicer_parameters_on_paginated_requests", "additional_query_properties"):
            if retriever.get(unsupported):
                raise Unsupported(unsupported, f"{where}.retriever.{unsupported}")
        out: dict[str, Any] = {"name": self.names[name]}
        if self.names[name] != name:
            out["description"] = f"Airbyte stream {name!r}"
        slice_names = self._incremental(component, out, where)
        partition = self._partition(retriever, out, where)
        request = {"stream_slice": {**slice_names, **{field: f"{{{kind}[{key}]}}"
                                                      for field, (kind, key) in partition.items()}},
                   "next_page_token": {"next_page_token": _TOKEN}}
        self._requester(retriever.get("requester") or {}, out, f"{where}.retriever.requester", request)
        self._selector(retriever.get("record_selector") or {}, out, f"{where}.retriever.record_selector")
        self._paginator(retriever.get("paginator"), out, f"{where}.retriever.paginator")
        self._placed(out, where)
        self._transformations(component.get("transformations") or [], retriever.get("record_selector") or {},
                              partition, out, where, parameters)
        key = component.get("primary_key")
        if key:
            out["primary_key"] = self._primary_key(key, f"{where}.primary_key")
        schema = component.get("schema_loader")
        if isinstance(schema, dict) and schema.get("type") == "InlineSchemaLoader":
            out["schema"] = schema.get("schema") or {}
        elif schema:
            self._expect(schema, "InlineSchemaLoader", f"{where}.schema_loader")
        return out

    def _expect(self, component: Any, kind: str | tuple[str, ...], where: str) -> str:
        kinds = (kind,) if isinstance(kind, str) else kind
        found = component.get("type") if isinstance(component, dict) else type(component).__name__
        if found not in kinds:
            raise Unsupported(f"component {found!r}" if found else "a component without a type", where)
        return str(found)

    def _primary_key(self, key: Any, where: str) -> str | list[str]:
        if isinstance(key, str):
            return key
        flat = [k[0] if isinstance(k, list) and len(k) == 1 else k for k in key]
        if not all(isinstance(k, str) for k in flat):
            raise Unsupported("a primary key on a nested field", where)
        return flat if len(flat) > 1 else flat[0]

    # --- requester ---------------------------------------------------------------------------------------

    def _requester(self, requester: dict[str, Any], out: dict[str, Any], where: str, request: dict[str, Any]) -> None:
        self._expect(requester, "HttpRequester", where)
        parameters = requester.get(PARAMETERS) or {}
        for unsupported in ("fetch_properties_from_endpoint", "query_properties", "use_cache", "decoder"):
            if requester.get(unsupported) not in (None, False, {}, ""):
                raise Unsupported(unsupported, f"{where}.{unsupported}")
        base = self.plain(requester.get("url_base"), f"{where}.url_base", parameters).rstrip("/")
        self._shared("_base_url", base, where, "url_base")
        path = self._as_params(self.render(requester.get("path") or "", f"{where}.path", parameters, request),
                               out, f"{where}.path", token=False)
        out["path"] = "/" + self._placeholders(path, f"{where}.path").lstrip("/")
        method = str(requester.get("http_method") or "GET").upper()
        if method not in ("GET", "POST"):
            raise Unsupported(f"http_method {method}", f"{where}.http_method")
        out["method"] = method
        params = self._mapping(requester.get("request_parameters"), f"{where}.request_parameters", parameters,
                               request, out)
        headers = self._mapping(requester.get("request_headers"), f"{where}.request_headers", parameters, request,
                                out)
        bodies = {kind: self._mapping(requester.get(kind), f"{where}.{kind}", parameters, request, out)
                  for kind in ("request_body_json", "request_body_data")}
        if params:
            out["params"] = {**out.get("params", {}), **params}
        if headers:
            out["headers"] = {**out.get("headers", {}), **{key: str(value) for key, value in headers.items()}}
        for kind, body in bodies.items():
            if body:  # sent with a GET too, as the CDK does
                out["body"] = body
                self._place(out, _PLACES[kind], f"{where}.{kind}")
        authenticator = requester.get("authenticator")
        self._shared("_auth", self._authenticator(authenticator, f"{where}.authenticator"), where, "authenticator")
        key_in = ((authenticator or {}).get("inject_into") or {}).get("inject_into") \
            if isinstance(authenticator, dict) and authenticator.get("type") == "ApiKeyAuthenticator" else None
        if key_in in ("body_json", "body_data"):  # the key rides in each request's body: its format is the stream's
            self._place(out, _PLACES[key_in], f"{where}.authenticator.inject_into")
        self._retries(self._error_handler(requester.get("error_handler"), f"{where}.error_handler", out), out,
                      f"{where}.error_handler")

    def _mapping(self, value: Any, where: str, parameters: Mapping[str, Any], request: dict[str, Any],
                 out: dict[str, Any]) -> dict[str, Any]:
        if value in (None, {}):
            return {}
        if not isinstance(value, dict):
            raise Unsupported("a template that builds the whole mapping", where)
        result: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                if not where.endswith("request_body_json"):  # a form's fields and headers are flat
                    raise Unsupported("a nested value", f"{where}.{key}")
                result[str(key)] = self._nested(item, f"{where}.{key}", parameters, request, out)
                continue
            if not isinstance(item, str):
                result[str(key)] = item  # a number or a boolean, as written
                continue
            text = self.render(item, f"{where}.{key}", parameters, request)
            if text in (_START, _END):
                self._window_option(out, "start_param" if text == _START else "end_param", str(key), where)
                continue
            if text == "":
                continue  # the CDK leaves empty options out
            text = self._placeholders(text, f"{where}.{key}")
            result[str(key)] = self._resolved_secret(text, where) if _SECRET.search(text) else text
        return result

    def _nested(self, value: Any, where: str, parameters: Mapping[str, Any], request: dict[str, Any],
                out: dict[str, Any]) -> Any:
        """A JSON body's nested value: its strings rendered, its structure kept; a window bound or the page
        token inside becomes the engine's ``{param[...]}``, written there on each request."""
        if isinstance(value, dict):
            return {str(k): self._nested(v, f"{where}.{k}", parameters, request, out) for k, v in value.items()}
        if isinstance(value, list):
            return [self._nested(v, f"{where}[{i}]", parameters, request, out) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        text = self._as_params(self.render(value, where, parameters, request), out, where, token=True)
        text = self._placeholders(text, where)
        return self._resolved_secret(text, where) if _SECRET.search(text) else text

    def _window_option(self, out: dict[str, Any], setting: str, name: str, where: str) -> None:
        incremental = out.get("incremental")
        if incremental is None:
            raise Unsupported("a window bound in a stream without incremental_sync", where)
        incremental[setting] = name
        self._place(out, _PLACES[where.rsplit(".", 1)[-1]], where, name)

    def _as_params(self, text: str, out: dict[str, Any], where: str, token: bool) -> str:
        """Window bounds (and, with ``token``, the page token) in a path or a nested body value as the engine's
        ``{param[...]}``: a report API's ``/daily/{{ stream_slice.start_time }}/...`` becomes
        ``{param[window_start]}``, written in the cursor's format. A path cannot leave out a token that a
        first page does not have, so there the token stays refused."""
        for marker, setting, name in ((_START, "start_param", "window_start"), (_END, "end_param", "window_end")):
            if marker not in text:
                continue
            incremental = out.get("incremental")
            if incremental is None:
                raise Unsupported("a window bound in a stream without incremental_sync", where)
            if incremental.get(setting) not in (None, name):
                raise Unsupported("a window bound both in a template and in a request option", where)
            incremental[setting] = name
            text = text.replace(marker, f"{{param[{name}]}}")
        if token and _TOKEN in text:
            out["_token_in_template"] = True  # the paginator's token is then named for it
            text = text.replace(_TOKEN, f"{{param[{_TOKEN_PARAM}]}}")
        return text

    def _placeholders(self, text: str, where: str) -> str:
        markers = [m for m in _MARKER.findall(text) if not m.startswith("\x00secret:")]
        if markers:
            shown = text.replace(_START, "{start}").replace(_END, "{end}").replace(_TOKEN, "{next_page_token}")
            raise Unsupported(f"a request value built from the window or page token ({shown!r})", where)
        return text

    # --- auth and errors -----------------------------------------------------------------------------------

    def _authenticator(self, auth: Any, where: str) -> dict[str, Any] | None:
        if not auth:
            return None
        kind = self._expect(auth, ("ApiKeyAuthenticator", "BearerAuthenticator", "BasicHttpAuthenticator",
                                   "NoAuth", "OAuthAuthenticator", "SelectiveAuthenticator",
                                   "SessionTokenAuthenticator"), where)
        parameters = auth.get(PARAMETERS) or {}
        if kind == "NoAuth":
            return None
        if kind == "SessionTokenAuthenticator":
            return self._session(auth, where, parameters)
        if kind == "SelectiveAuthenticator":
            chosen: Any = self.config.plain
            for step in auth.get("authenticator_selection_path") or []:
                chosen = chosen.get(step) if isinstance(chosen, Mapping) else None
            options = auth.get("authenticators") or {}
            if chosen not in options:
                selector = "/".join(auth.get("authenticator_selection_path") or [])
                raise ConfigurationError(f"{where}: the config's {selector} is {chosen!r}; the manifest knows "
                                         f"{', '.join(options)}")
            return self._authenticator(options[chosen], f"{where}.authenticators.{chosen}")
        if kind == "BearerAuthenticator":
            return {"type": "bearer", "token": self.secret(auth.get("api_token"), f"{where}.api_token", parameters)}
        if kind == "BasicHttpAuthenticator":
            return {"type": "basic", "username": self.plain(auth.get("username"), f"{where}.username", parameters),
                    "password": self.secret(auth.get("password") or "", f"{where}.password", parameters)}
        if kind == "ApiKeyAuthenticator":
            option = auth.get("inject_into") or {"type": "RequestOption", "inject_into": "header",
                                                  "field_name": auth.get("header") or ""}
            self._expect(option, "RequestOption", f"{where}.inject_into")
            location = {"header": "header", "request_parameter": "query", "body_json": "body",
                        "body_data": "body"}.get(str(option.get("inject_into")))
            if location is None:
                raise Unsupported(f"an API key injected into {option.get('inject_into')}", f"{where}.inject_into")
            name = self.plain(option.get("field_name"), f"{where}.inject_into.field_name", parameters)
            return {"type": "api_key", "name": name, "location": location,
                    "key": self.secret(auth.get("api_token"), f"{where}.api_token", parameters)}
        # OAuthAuthenticator
        for unsupported in ("token_expiry_date_format", "profile_assertion",
                            "use_profile_assertion", "refresh_request_headers"):
            if auth.get(unsupported):
                raise Unsupported(f"OAuthAuthenticator.{unsupported}", f"{where}.{unsupported}")
        grant = self.plain(auth.get("grant_type") or "refresh_token", f"{where}.grant_type", parameters)
        extra = {str(k): self.plain(v, f"{where}.refresh_request_body.{k}", parameters)
                 for k, v in (auth.get("refresh_request_body") or {}).items()}
        settings: dict[str, Any] = {
            "type": "oauth2",
            "token_url": self.plain(auth.get("token_refresh_endpoint"), f"{where}.token_refresh_endpoint", parameters),
            "client_id": self.plain(auth.get("client_id"), f"{where}.client_id", parameters),
            "client_secret": self.secret(auth.get("client_secret"), f"{where}.client_secret", parameters),
            "scopes": list(auth.get("scopes") or []), "extra": extra}
        if grant == "refresh_token":
            settings["refresh_token"] = self.secret(auth.get("refresh_token"), f"{where}.refresh_token", parameters)
            updater = auth.get("refresh_token_updater")
            if updater:  # the CDK writes the newest back into the config; the engine keeps it in the shared state
                name = self.plain(updater.get("refresh_token_name") or "refresh_token",
                                  f"{where}.refresh_token_updater.refresh_token_name", parameters)
                settings.update(rotating=True, refresh_token_path=name)
        elif grant != "client_credentials":
            raise Unsupported(f"the OAuth grant {grant!r}", f"{where}.grant_type")
        if (auth.get("access_token_name") or "access_token") != "access_token" or \
                (auth.get("expires_in_name") or "expires_in") != "expires_in":
            raise Unsupported("access_token_name/expires_in_name other than the standard", where)
        return settings

    def _session(self, auth: dict[str, Any], where: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
        login = auth.get("login_requester") or {}
        at = f"{where}.login_requester"
        self._expect(login, "HttpRequester", at)
        login_parameters = {**parameters, **(login.get(PARAMETERS) or {})}
        if str(login.get("http_method") or "GET").upper() != "POST" or login.get("request_parameters") or (
                login.get("authenticator") or {}).get("type", "NoAuth") != "NoAuth":
            raise Unsupported("a login that is not a plain POST (query parameters, or an auth of its own)", at)
        if login.get("request_body_json") and login.get("request_body_data"):
            raise Unsupported("a login with both a JSON and a form body", at)
        form = bool(login.get("request_body_data"))
        body = login.get("request_body_data") if form else login.get("request_body_json")
        if not isinstance(body or {}, dict):
            raise Unsupported("a login body that is not a mapping", at)
        url = self.plain(login.get("url_base"), f"{at}.url_base", login_parameters).rstrip("/")
        path = self.plain(login.get("path") or "", f"{at}.path", login_parameters).lstrip("/")
        settings: dict[str, Any] = {
            "type": "session", "login_url": f"{url}/{path}" if path else url,
            "body": {str(k): self.secret(v if isinstance(v, str) else str(v), f"{at}.body.{k}", login_parameters)
                     for k, v in (body or {}).items()},
            "body_format": "form" if form else "json",
            "login_headers": {str(k): self.plain(v, f"{at}.request_headers.{k}", login_parameters)
                              for k, v in (login.get("request_headers") or {}).items()},
            "token_path": ".".join(self.plain(p, f"{where}.session_token_path", parameters)
                                   for p in auth.get("session_token_path") or []),
        }
        if auth.get("expiration_duration"):
            settings["lifetime"] = parse_duration(self.plain(auth["expiration_duration"],
                                                             f"{where}.expiration_duration", parameters))
        sent = auth.get("request_authentication") or {}
        sent_kind = self._expect(sent, ("ApiKey", "Bearer"), f"{where}.request_authentication")
        if sent_kind == "Bearer":
            settings.update(header="Authorization", prefix="Bearer ")
        else:
            option = sent.get("inject_into") or {}
            if option.get("inject_into") != "header":
                raise Unsupported(f"a session token injected into {option.get('inject_into')}",
                                  f"{where}.request_authentication")
            settings.update(header=self.plain(option.get("field_name"), f"{where}.request_authentication",
                                              parameters), prefix="")
        return settings

    def _error_handler(self, handler: Any, where: str, out: dict[str, Any]) -> dict[str, Any]:
        """Error handlers onto the engine's retries: 429 and 5xx are retried (with the API's wait headers
        honoured) and other 4xx fail, which is what most handlers spell out; IGNORE becomes the stream's
        ``ignore_statuses``; anything else is refused."""
        if not handler:
            return {}
        kind = self._expect(handler, ("DefaultErrorHandler", "CompositeErrorHandler"), where)
        handlers = handler.get("error_handlers") or [] if kind == "CompositeErrorHandler" else [handler]
        retry: dict[str, Any] = {}
        headers: list[str] = []
        for index, one in enumerate(handlers):
            at = f"{where}.error_handlers[{index}]" if kind == "CompositeErrorHandler" else where
            self._expect(one, "DefaultErrorHandler", at)
            if one.get("max_retries") is not None:
                retry["max_attempts"] = max(retry.get("max_attempts", 1), int(one["max_retries"]) + 1)
            if one.get("max_time") is not None:
                retry["max_elapsed_seconds"] = float(one["max_time"])
            for strategy in one.get("backoff_strategies") or []:
                strategy_kind = self._expect(strategy, ("ExponentialBackoffStrategy", "ConstantBackoffStrategy",
                                                        "WaitTimeFromHeader"), f"{at}.backoff_strategies")
                if strategy_kind == "ExponentialBackoffStrategy":
                    retry["backoff_seconds"] = float(Template(str(strategy.get("factor", 5))).eval({}))
                elif strategy_kind == "ConstantBackoffStrategy":
                    seconds = float(Template(str(strategy.get("backoff_time_in_seconds"))).eval({"config": {}}))
                    retry.update(backoff_seconds=seconds, max_backoff_seconds=seconds)
                else:
                    if strategy.get("regex"):
                        raise Unsupported("WaitTimeFromHeader.regex", f"{at}.backoff_strategies")
                    headers.append(str(strategy.get("header")))
            for filter_ in one.get("response_filters") or []:
                ignored = self._response_filter(filter_, f"{at}.response_filters")
                if ignored:
                    out["ignore_statuses"] = sorted({*out.get("ignore_statuses", []), *ignored})
        settings: dict[str, Any] = {"retry": retry} if retry else {}
        if headers:
            defaults = ["Retry-After", "RateLimit-Reset", "RateLimit", "X-RateLimit-Reset"]
            settings["rate_limit_headers"] = {"reset": list(dict.fromkeys([*headers, *defaults]))}
        return settings

    def _retries(self, settings: dict[str, Any], out: dict[str, Any], where: str) -> None:
        """The first stream's error handler is the source's retries; a stream whose handler differs gets its
        own (``retry``). Wait headers are the source's: streams that differ there are refused."""
        if self._retry is None:
            self._retry = (where, settings)
            return
        shared = self._retry[1]
        if settings == shared:
            return
        if settings.get("rate_limit_headers") != shared.get("rate_limit_headers"):
            raise Unsupported("a WaitTimeFromHeader that differs from stream to stream", where)
        out["retry"] = settings.get("retry") or {}

    def _response_filter(self, filter_: dict[str, Any], where: str) -> set[int]:
        """The statuses the filter ignores (read as an empty last page); nothing for what our retries do."""
        self._expect(filter_, "HttpResponseFilter", where)
        action = filter_.get("action")
        codes = set(filter_.get("http_codes") or [])
        matches = codes or filter_.get("error_message_contains") or filter_.get("predicate")
        if not matches:
            return set()  # matches no response: the CDK's default handling applies, and so does ours
        if filter_.get("error_message_contains") or filter_.get("predicate"):
            raise Unsupported("an HttpResponseFilter matched by message or predicate", where)
        retried = {code for code in codes if code == 429 or code >= 500}
        if action in ("RETRY", "RATE_LIMITED") and retried == codes:
            return set()
        if action == "FAIL" and not retried:
            return set()
        if action == "IGNORE" and 429 not in codes and all(400 <= code < 600 for code in codes):
            return codes
        raise Unsupported(f"{action} for HTTP {', '.join(map(str, sorted(codes)))}", where)

    # --- records ----------------------------------------------------------------------------------------------

    def _selector(self, selector: dict[str, Any], out: dict[str, Any], where: str) -> None:
        self._expect(selector, "RecordSelector", where)
        extractor = selector.get("extractor") or {}
        self._expect(extractor, "DpathExtractor", f"{where}.extractor")
        parameters = extractor.get(PARAMETERS) or {}
        path = [self.plain(step, f"{where}.extractor.field_path", parameters) for step in
                extractor.get("field_path") or []]
        if any("." in step for step in path):
            raise Unsupported("a field_path with a '.' in a key", f"{where}.extractor.field_path")
        out["records_path"] = ".".join(path)

    def _transformations(self, steps: list[Any], selector: dict[str, Any], partition: dict[str, tuple[str, str]],
                         out: dict[str, Any], where: str, parameters: Mapping[str, Any]) -> None:
        record_filter = selector.get("record_filter")
        condition = None
        if record_filter:
            self._expect(record_filter, "RecordFilter", f"{where}.record_filter")
            condition = record_filter.get("condition")
            self._record_template(condition, f"{where}.record_filter.condition")
        kept: list[dict[str, Any]] = []
        for index, step in enumerate(steps):
            at = f"{where}.transformations[{index}]"
            kind = self._expect(step, ("AddFields", "RemoveFields", "KeysToLower"), at)
            if kind == "AddFields":
                fields = []
                for field in step.get("fields") or []:
                    self._record_template(str(field.get("value")), f"{at}.fields")
                    fields.append({"path": [str(p) for p in field.get("path") or []], "value": str(field.get("value")),
                                   "value_type": field.get("value_type")})
                kept.append({"type": kind, "fields": fields, "condition": step.get("condition") or None})
            elif kind == "RemoveFields":
                kept.append({"type": kind, "field_pointers": step.get("field_pointers") or [],
                             "condition": step.get("condition") or None})
            else:
                kept.append({"type": kind})
        if not kept and condition is None:
            return
        out["transform"] = {"class": "sync_assets.airbyte_manifest.parts:RecordPipeline",
                            "options": {"steps": kept, "condition": condition, "parameters": dict(parameters),
                                        "partition": {field: key for field, (_, key) in partition.items()},
                                        "config": self.config.plain, "stream": out["name"]}}

    def _record_template(self, text: Any, where: str) -> None:
        template = Template(str(text), where)
        other = template.variables - {"record", "config", "parameters", "stream_slice", "stream_partition",
                                      "value", "path", "property"}
        if other:
            raise Unsupported(f"{text!r}, which depends on {', '.join(sorted(other))} per record,", where)
        if template.depends_on("stream_interval") or "start_time" in str(text) or "end_time" in str(text):
            raise Unsupported(f"{text!r}, which depends on the slice's window per record,", where)
        if template.depends_on("config") and any(key in str(text) for key in self.config.symbolic
                                                 if key not in self.config.plain):
            raise Unsupported(f"{text!r}, which needs a secret per record,", where)

    # --- pagination -------------------------------------------------------------------------------------------

    def _paginator(self, paginator: Any, out: dict[str, Any], where: str) -> None:
        if not paginator or paginator.get("type") == "NoPagination":
            return
        self._expect(paginator, "DefaultPaginator", where)
        parameters = paginator.get(PARAMETERS) or {}
        strategy = paginator.get("pagination_strategy") or {}
        kind = self._expect(strategy, ("PageIncrement", "OffsetIncrement", "CursorPagination"),
                            f"{where}.pagination_strategy")
        token_option, in_template = paginator.get("page_token_option"), out.pop("_token_in_template", False)
        if token_option and in_template:
            raise Unsupported("the page token both in page_token_option and in a request template",
                              f"{where}.page_token_option")
        token_param: str | None
        if in_template:  # the token goes where the body's template says ({param[next_page_token]})
            token_kind, token_param = "RequestOption", _TOKEN_PARAM
        elif not token_option:  # the CDK then sends the same request again until a page comes back short
            raise Unsupported("a DefaultPaginator without page_token_option (each page's request is the first's)",
                              f"{where}.page_token_option")
        else:
            token_kind = self._expect(token_option, ("RequestOption", "RequestPath"), f"{where}.page_token_option")
            token_param = self._request_parameter(token_option, f"{where}.page_token_option", parameters, out) \
                if token_kind == "RequestOption" else None
        size_option = paginator.get("page_size_option")
        size_param = self._request_parameter(size_option, f"{where}.page_size_option", parameters, out) \
            if size_option else None
        size_text = strategy.get("page_size")
        size = int(self.plain(size_text, f"{where}.pagination_strategy.page_size", parameters)) \
            if size_text not in (None, "") else None
        if kind != "CursorPagination" and token_kind == "RequestPath":
            raise Unsupported(f"RequestPath with {kind}", f"{where}.page_token_option")
        if kind == "PageIncrement":
            start = int(self.plain(strategy.get("start_from_page", 1), f"{where}.start_from_page", parameters))
            out["paginator"] = {"type": "page_number", "page_param": token_param, "start_page": start,
                                "size_param": size_param, "size": size}
        elif kind == "OffsetIncrement":
            out["paginator"] = {"type": "offset", "offset_param": token_param, "limit_param": size_param,
                                "limit": size}
        else:
            for field in ("cursor_value", "stop_condition"):
                text = strategy.get(field)
                if text and Template(str(text)).depends_on("config", "stream_slice", "stream_interval"):
                    raise Unsupported(f"{field} {text!r}, which depends on the config or the slice", where)
            out["paginator"] = {"type": "custom", "class": "sync_assets.airbyte_manifest.parts:CursorPagination",
                                "options": {"cursor_value": str(strategy.get("cursor_value")),
                                            "stop_condition": strategy.get("stop_condition"),
                                            "token_param": token_param, "size_param": size_param,
                                            "page_size": size, "path_token": token_kind == "RequestPath",
                                            "parameters": dict(parameters), "stream": out["name"]}}

    def _request_parameter(self, option: Any, where: str, parameters: Mapping[str, Any], out: dict[str, Any]) -> str:
        """A page or window option's name; where it is sent is kept for ``_placed``."""
        self._expect(option, "RequestOption", where)
        place = _PLACES.get(str(option.get("inject_into")))
        if place is None:
            raise Unsupported(f"a request option injected into {option.get('inject_into')}", where)
        if option.get("field_path"):
            raise Unsupported("RequestOption.field_path", where)
        name = self.plain(option.get("field_name"), f"{where}.field_name", parameters)
        self._place(out, place, where, name)
        return name

    @staticmethod
    def _place(out: dict[str, Any], place: str, where: str, name: str | None = None) -> None:
        """Keep where an option (``name``) or a static body goes: the query, a header, a JSON or a form body."""
        out.setdefault("_places", []).append((where, place, name))

    @staticmethod
    def _placed(out: dict[str, Any], where: str) -> None:
        """The stream's ``param_places`` (the options not sent in the query) and its body's format. A body is
        JSON or a form, so a manifest that puts options in both is refused."""
        places: list[tuple[str, str, str | None]] = out.pop("_places", [])
        json_at = [at for at, place, _ in places if place == "body"]
        form_at = [at for at, place, _ in places if place == "form"]
        if json_at and form_at:
            inside = [at.removeprefix(f"{where}.") for at in (json_at[0], form_at[0])]  # within the stream
            raise Unsupported(f"request options both in a JSON body ({inside[0]}) and in a form body ({inside[1]})",
                              where)
        if form_at:
            out["body_format"] = "form"
        moved = {name: "body" if place == "form" else place for _, place, name in places
                 if name is not None and place != "query"}
        if moved:
            out["param_places"] = moved

    # --- windows and partitions ----------------------------------------------------------------------------------

    def _incremental(self, component: dict[str, Any], out: dict[str, Any], where: str) -> dict[str, str]:
        cursor = component.get("incremental_sync")
        if not cursor:
            return {}
        at = f"{where}.incremental_sync"
        self._expect(cursor, "DatetimeBasedCursor", at)
        parameters = cursor.get(PARAMETERS) or {}
        for unsupported in ("clamping", "global_substream_cursor", "is_client_side_incremental",
                            "is_compare_strictly"):
            if cursor.get(unsupported):
                raise Unsupported(f"DatetimeBasedCursor.{unsupported}", f"{at}.{unsupported}")
        fmt = self.plain(cursor.get("datetime_format"), f"{at}.datetime_format", parameters)
        incremental: dict[str, Any] = {
            "cursor_field": self.plain(cursor.get("cursor_field"), f"{at}.cursor_field", parameters),
            "start": self._instant(cursor.get("start_datetime"), fmt, f"{at}.start_datetime", parameters),
            "param_format": {"%s": "epoch", "%ms": "epoch_ms"}.get(fmt, fmt)}
        formats = [self.plain(f, f"{at}.cursor_datetime_formats", parameters)
                   for f in cursor.get("cursor_datetime_formats") or [fmt]]
        incremental["cursor_formats"] = [f for f in formats if f not in ("%s", "%ms", "%s_as_float")]
        end = cursor.get("end_datetime")
        if end:  # now (the default), or a fixed end: the stream stops there (``{{ config.end or now_utc() }}``: either)
            instant = self._instant(end, fmt, f"{at}.end_datetime", parameters)
            text = end.get("datetime") if isinstance(end, dict) else end
            now = datetime.now(UTC)  # now as the template wrote it: to the day, at the coarsest
            if not any(macro in str(text) for macro in _NOW_MACROS) or \
                    not now - timedelta(days=1, minutes=10) <= instant <= now + timedelta(minutes=10):
                # Airbyte keeps records up to the end instant, inclusive; a granularity makes it a whole step
                granularity = cursor.get("cursor_granularity")
                incremental["end"] = instant + (parse_duration(self.plain(
                    granularity, f"{at}.cursor_granularity", parameters)) if granularity else timedelta(microseconds=1))
        step = cursor.get("step")
        if step:
            length = parse_duration(self.plain(step, f"{at}.step", parameters))
            window = {timedelta(hours=1): "hourly", timedelta(days=1): "daily", timedelta(days=7): "weekly"}.get(length)
            incremental["window"] = window or ("hourly" if length < timedelta(days=1) else "daily")
            if window is None:
                incremental["max_slice"] = length
        lookback = cursor.get("lookback_window")
        if lookback:
            incremental["lookback"] = parse_duration(self.plain(lookback, f"{at}.lookback_window", parameters))
        granularity = cursor.get("cursor_granularity")
        if granularity and step:
            length = parse_duration(self.plain(granularity, f"{at}.cursor_granularity", parameters))
            if length > timedelta(0):
                incremental.update(end_inclusive=True, end_granularity=length)
        if cursor.get("is_data_feed"):
            incremental["order"] = "descending"
        out["incremental"] = incremental
        for option, setting in (("start_time_option", "start_param"), ("end_time_option", "end_param")):
            if cursor.get(option):
                incremental[setting] = self._request_parameter(cursor[option], f"{at}.{option}", parameters, out)
        start_name = self.plain(cursor.get("partition_field_start") or "start_time", at, parameters)
        end_name = self.plain(cursor.get("partition_field_end") or "end_time", at, parameters)
        return {start_name: _START, end_name: _END}

    def _instant(self, value: Any, fmt: str, where: str, parameters: Mapping[str, Any]) -> datetime:
        if isinstance(value, dict):
            self._expect(value, "MinMaxDatetime", where)
            if value.get("min_datetime") or value.get("max_datetime"):
                raise Unsupported("MinMaxDatetime min_datetime/max_datetime", where)
            fmt = self.plain(value.get("datetime_format"), f"{where}.datetime_format", parameters) or fmt
            value = value.get("datetime")
        text = self.plain(value, where, parameters)
        try:
            if fmt in ("%s", "%ms"):
                return datetime.fromtimestamp(float(text) / (1000 if fmt == "%ms" else 1), tz=UTC)
            return as_utc(datetime.strptime(text, fmt)) if fmt else str_to_datetime(text)
        except ValueError:
            try:
                return str_to_datetime(text)  # the CDK falls back to a lenient parse too
            except ValueError:
                raise UnreadableDate(where, text, fmt) from None

    def _partition(self, retriever: dict[str, Any], out: dict[str, Any], where: str) -> dict[str, tuple[str, str]]:
        """The stream's partition router as a parent or for_each lists; its partition fields, each with the
        placeholder kind (parent or each) and the key in the record that fills it.

        One SubstreamPartitionRouter is a parent (of any kind). Anything else is the cartesian product Airbyte
        reads: one for_each list per router, fixed values or the parent's records in the store."""
        router = retriever.get("partition_router")
        if not router:
            return {}
        at = f"{where}.retriever.partition_router"
        routers = router if isinstance(router, list) else [router]
        kinds = [self._expect(r, ("SubstreamPartitionRouter", "ListPartitionRouter"), at) for r in routers]
        if kinds == ["SubstreamPartitionRouter"]:
            return self._parent(routers[0], out, at)
        if out.get("incremental"):
            raise Unsupported("a ListPartitionRouter, or several partition routers, on an incremental stream", at)
        fields: dict[str, tuple[str, str]] = {}
        for index, (one, kind) in enumerate(zip(routers, kinds, strict=True)):
            one_at = f"{at}[{index}]" if len(routers) > 1 else at
            fields.update(self._list_router(one, out, one_at) if kind == "ListPartitionRouter"
                          else self._values_of_router(one, out, one_at))
        return fields

    def _parent_config(self, router: dict[str, Any], at: str) -> tuple[dict[str, Any], str, str, str]:
        """A SubstreamPartitionRouter's one ParentStreamConfig: the config, the parent's manifest name, its
        ``parent_key`` and the ``partition_field`` it fills."""
        configs = router.get("parent_stream_configs") or []
        if len(configs) != 1:
            raise Unsupported(f"{len(configs)} parent_stream_configs (one is supported)", at)
        config = configs[0]
        self._expect(config, "ParentStreamConfig", f"{at}.parent_stream_configs[0]")
        parameters = config.get(PARAMETERS) or {}
        parent = config.get("stream") or {}
        parent_name = parent.get("name") if isinstance(parent, dict) else None
        if parent_name not in self.manifest_streams:
            raise Unsupported(f"a parent stream ({parent_name!r}) that is not one of the manifest's streams", at)
        key = self.plain(config.get("parent_key"), f"{at}.parent_key", parameters)
        field = self.plain(config.get("partition_field"), f"{at}.partition_field", parameters)
        if not re.fullmatch(r"[A-Za-z0-9_]+", key):
            raise Unsupported(f"a nested parent_key ({key!r})", f"{at}.parent_key")
        for unsupported in ("extra_fields", "lazy_read_pointer"):
            if config.get(unsupported):
                raise Unsupported(f"ParentStreamConfig.{unsupported}", f"{at}.{unsupported}")
        return config, parent_name, key, field

    def _parent(self, router: dict[str, Any], out: dict[str, Any], at: str) -> dict[str, tuple[str, str]]:
        config, parent_name, key, field = self._parent_config(router, at)
        if self._windowed(parent_name) and not out.get("incremental"):
            raise Unsupported(f"a substream without a cursor of its own under a parent ({parent_name}) that is a "
                              "substream of an incremental stream", at)
        if out.get("incremental") and config.get("incremental_dependency"):
            # Airbyte then reads only the parents changed since the last read; we read every window for every
            # parent the parent holds
            raise Unsupported("incremental_dependency on a substream with its own incremental_sync",
                              f"{at}.parent_stream_configs[0].incremental_dependency")
        out["parent"] = {"stream": self.names[parent_name]}
        self._partition_option(config.get("request_option"), f"{{parent[{key}]}}", out, f"{at}.request_option",
                               config.get(PARAMETERS) or {})
        return {field: ("parent", key)}

    def _values_of_router(self, router: dict[str, Any], out: dict[str, Any], at: str) -> dict[str, tuple[str, str]]:
        """One of several routers over a parent: its values are the ``parent_key``s of the parent's records in
        the store (its published snapshot, or every record it holds when it has windows)."""
        config, parent_name, key, field = self._parent_config(router, at)
        out.setdefault("for_each", []).append(
            {"field": field, "values_of": {"stream": self.names[parent_name], "key": key}})
        self._partition_option(config.get("request_option"), f"{{each[{field}]}}", out, f"{at}.request_option",
                               config.get(PARAMETERS) or {})
        return {field: ("each", field)}

    def _windowed(self, name: str) -> bool:
        """Whether stream ``name`` is a substream whose chain of parents starts at an incremental stream."""
        routers = (self.manifest_streams[name].get("retriever") or {}).get("partition_router")
        for router in routers if isinstance(routers, list) else [routers] if routers else []:
            for config in router.get("parent_stream_configs") or []:
                grand = (config.get("stream") or {}).get("name")
                if grand in self.manifest_streams and (self.manifest_streams[grand].get("incremental_sync")
                                                       or self._windowed(grand)):
                    return True
        return False

    def _list_router(self, router: dict[str, Any], out: dict[str, Any], at: str) -> dict[str, tuple[str, str]]:
        parameters = router.get(PARAMETERS) or {}
        field = self.plain(router.get("cursor_field"), f"{at}.cursor_field", parameters)
        if not re.fullmatch(r"[A-Za-z0-9_]+", field):
            raise Unsupported(f"a cursor_field that is not a plain name ({field!r})", f"{at}.cursor_field")
        values = router.get("values")
        if isinstance(values, str):
            values = literal(self.plain(values, f"{at}.values", parameters))
        if not isinstance(values, list) or not values or not all(isinstance(v, str | int) for v in values):
            raise ConfigurationError(f"{at}.values: expected a non-empty list of strings or numbers, got "
                                     f"{values!r}; check the config values it comes from")
        out.setdefault("for_each", []).append({"field": field, "values": values})
        self._partition_option(router.get("request_option"), f"{{each[{field}]}}", out, f"{at}.request_option",
                               parameters)
        return {field: ("each", field)}

    def _partition_option(self, option: Any, placeholder: str, out: dict[str, Any], where: str,
                          parameters: Mapping[str, Any]) -> None:
        """A partition's value sent as a query parameter or a header (RequestOption)."""
        if not option:
            return
        self._expect(option, "RequestOption", where)
        name = self.plain(option.get("field_name"), f"{where}.field_name", parameters)
        target = {"request_parameter": "params", "header": "headers"}.get(str(option.get("inject_into")))
        if target is None:
            raise Unsupported(f"a partition injected into {option.get('inject_into')}", where)
        if target == "params":
            self._place(out, "query", where)
        out.setdefault(target, {})[name] = placeholder
