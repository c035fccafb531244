"""Values that come from the environment at run time, so that no secret is written into config.

A config holds ``Env(env="NAME")`` (YAML: ``{env: NAME}``) and the value is read only when a client
is built, which is why listing or validating a source never needs its credentials. A Dagster
``EnvVar("NAME")`` passed from Python is recognised and turned into ``Env`` (without importing
Dagster): ``EnvVar`` is a ``str`` subclass, and taking it for a literal would send the *name* of
the variable as the token.
"""

from __future__ import annotations

import os
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

from sync_assets.errors import ConfigurationError
from sync_assets.redaction import register_secret


class Env(BaseModel):
    """A value read from the environment variable ``env`` when the client is built."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Name of the environment variable.")
    default: str | None = Field(None, description="Used when the variable is unset; never for secrets.")

    @field_validator("default", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        """YAML reads ``default: 2024-01-01`` as a date and ``default: 8`` as a number; both are text here, as
        the variable itself would be."""
        return value.isoformat() if isinstance(value, date) else str(value) if isinstance(value, int | float) else value

    def resolve(self, used_for: str) -> str:
        value = os.environ.get(self.env, self.default)
        if value is None or value == "":
            raise ConfigurationError(
                f"environment variable {self.env} is not set (it provides {used_for}); "
                f"export it, or put {self.env}=... in a .env file next to where you run the command"
            )
        return value


def _from_dagster_env_var(value: Any) -> Any:
    name = getattr(value, "env_var_name", None)
    return Env(env=name) if isinstance(name, str) else value


Text = Annotated[Env | str, BeforeValidator(_from_dagster_env_var)]
"""A plain setting that may come from the environment (base URLs, user names)."""

Secret = Annotated[Env | SecretStr, BeforeValidator(_from_dagster_env_var)]
"""A credential: from the environment (recommended) or a literal that ``repr`` keeps hidden."""


def resolve_at_load(value: Any, used_for: str) -> Any:
    """``value`` itself, or, if it names an environment variable (``{env: NAME, default: ...}`` or a Dagster
    ``EnvVar``), that variable's value now. For settings that shape the definitions rather than a request
    (a stream's first day fixes its partitions), so they cannot wait for a client; never for secrets."""
    value = _from_dagster_env_var(value)
    if isinstance(value, dict) and "env" in value:
        value = Env.model_validate(value)
    return value.resolve(used_for) if isinstance(value, Env) else value


def resolve_text(value: Env | str, used_for: str) -> str:
    return value.resolve(used_for) if isinstance(value, Env) else value


def resolve_secret(value: Env | SecretStr, used_for: str) -> str:
    """The secret's value, registered for masking before anything can log it."""
    secret = value.resolve(used_for) if isinstance(value, Env) else value.get_secret_value()
    register_secret(secret)
    return secret
