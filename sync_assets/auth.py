"""How a request proves who it is: bearer token, API key (header or query), HTTP basic.

Each kind is a small pydantic model (the YAML ``auth: {type: ...}`` block) whose ``resolve``
turns env references into the headers and query parameters to send. Resolution happens once per
client, and every secret value is registered for masking on the way.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from sync_assets.redaction import register_secret
from sync_assets.secrets import Secret, Text, resolve_secret, resolve_text


@dataclass(frozen=True)
class ResolvedAuth:
    """What to add to every request; ``query_params`` is also what must never be stored."""

    headers: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, str] = field(default_factory=dict)


class BearerAuth(BaseModel):
    """``Authorization: Bearer <token>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["bearer"] = "bearer"
    token: Secret

    def resolve(self) -> ResolvedAuth:
        return ResolvedAuth(headers={"Authorization": f"Bearer {resolve_secret(self.token, 'auth.token')}"})


class ApiKeyAuth(BaseModel):
    """An API key sent as a header (``X-API-Key: <key>``) or a query parameter (``?api_key=<key>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["api_key"] = "api_key"
    key: Secret
    name: str = Field("X-API-Key", description="Header or query parameter name.")
    location: Literal["header", "query"] = "header"

    def resolve(self) -> ResolvedAuth:
        key = resolve_secret(self.key, "auth.key")
        if self.location == "query":
            return ResolvedAuth(query_params={self.name: key})
        return ResolvedAuth(headers={self.name: key})


class BasicAuth(BaseModel):
    """HTTP basic auth: ``Authorization: Basic base64(username:password)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["basic"] = "basic"
    username: Text
    password: Secret

    def resolve(self) -> ResolvedAuth:
        user = resolve_text(self.username, "auth.username")
        password = resolve_secret(self.password, "auth.password")
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
        register_secret(encoded)  # the base64 form leaks the password as surely as the plain one
        return ResolvedAuth(headers={"Authorization": f"Basic {encoded}"})


Auth = Annotated[BearerAuth | ApiKeyAuth | BasicAuth, Field(discriminator="type")]
