"""The API as a Dagster resource: connection settings in the UI, credentials from ``EnvVar``.

The source declares everything; the resource carries what an operator changes per deployment
(base URL, the credential, concurrency, retries, budgets), shown in the UI with env var names
instead of values. Dagster sets resources up for every step, in whatever process runs it, so
nothing shared lives here: the client it opens keeps its rate-limit budget in the store under the Dagster instance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import Config, ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field, PrivateAttr, SecretStr

from sync_assets.errors import ConfigurationError
from sync_assets.home import home_under, sync_assets_home
from sync_assets.http import HttpClient, open_client
from sync_assets.rate_limit import Rate
from sync_assets.secrets import Env
from sync_assets.spec import ApiSource


class RateLimitConfig(Config):
    requests: int = Field(description="At most this many requests ...")
    per_seconds: float = Field(description="... in any window of this many seconds.")


class SyncApiResource(ConfigurableResource):  # type: ignore[type-arg]
    """Connection settings for one API; ``None`` keeps what the source declares."""

    base_url: str | None = Field(None, description="Overrides the source's base_url.")
    credential: str | None = Field(None, description="The auth secret (token, key or password); use an EnvVar.")
    concurrency: int = Field(10, ge=1, le=256, description="Windows or child requests in flight per run.")
    max_attempts: int | None = Field(None, ge=1, description="Attempts per request on 5xx and timeouts.")
    rate_limits: list[RateLimitConfig] | None = Field(None, description="Overrides the source's budgets.")

    _state_dir: Path | None = PrivateAttr(default=None)
    _clients: dict[str, HttpClient] = PrivateAttr(default_factory=dict)

    @classmethod
    def for_source(cls, source: ApiSource) -> SyncApiResource:
        """A resource whose env-backed settings show as ``EnvVar``s in the UI and resolve at run start."""
        settings: dict[str, Any] = {"concurrency": source.concurrency}
        if isinstance(source.base_url, Env) and source.base_url.default is None:
            # With a default, the engine resolves it (an EnvVar would make the variable mandatory).
            settings["base_url"] = EnvVar(source.base_url.env)
        secret = _auth_secret(source)
        if isinstance(secret, Env):
            settings["credential"] = EnvVar(secret.env)
        return cls(**settings)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        instance = context.instance
        self._state_dir = home_under(Path(instance.root_directory)) if instance else sync_assets_home()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def configured_source(self, source: ApiSource) -> ApiSource:
        """``source`` with this resource's settings applied."""
        update: dict[str, Any] = {"concurrency": self.concurrency}
        if self.base_url:
            update["base_url"] = self.base_url
        if self.credential and source.auth is not None:
            field = _SECRET_FIELDS.get(source.auth.type)
            if field is None:
                raise ConfigurationError(f"the API resource's credential cannot replace a {source.auth.type} "
                                         "auth's secrets; set them in the source (from env variables)")
            update["auth"] = source.auth.model_copy(update={field: SecretStr(self.credential)})
        if self.max_attempts:
            update["retry"] = source.retry.model_copy(update={"max_attempts": self.max_attempts})
        if self.rate_limits is not None:
            update["rate_limits"] = [Rate(r.requests, per=r.per_seconds) for r in self.rate_limits]
        return source.model_copy(update=update)

    def client(self, source: ApiSource) -> HttpClient:
        """The process's client for ``source`` (threads of a step share it, and its connections)."""
        if source.name not in self._clients:
            self._clients[source.name] = open_client(source, self._state_dir)
        return self._clients[source.name]


# The one credential the resource's `credential` setting replaces, per auth kind (a login has several).
_SECRET_FIELDS = {"bearer": "token", "api_key": "key", "basic": "password", "oauth2": "client_secret"}


def _auth_secret(source: ApiSource) -> Any:
    field = _SECRET_FIELDS.get(source.auth.type) if source.auth else None
    return getattr(source.auth, field) if field else None
