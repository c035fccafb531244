"""The three kinds of failure a sync can meet, and what each one means for the caller.

Every error the engine raises on purpose is one of these, so callers (the CLI, the Dagster layer, a
retry loop) decide by *kind*, never by parsing messages (what escapes from below, a full disk say,
stays what it is):

- ``ConfigurationError``: the user must change something (credentials, a path, a field, a
  partition to materialize first). Retrying cannot help, so nothing retries it: a bad token is one
  request, not a retry storm.
- ``TransientError``: the API is busy or flaky (429, 5xx, timeouts, resets), or another run holds
  the chunk this one wants. The HTTP client retries the API's; one escaping it means the retry
  budget ran out.
- ``SyncSystemError``: the API answered something we cannot trust (malformed JSON, records not
  where the config says). The partition fails and its state stays where it was.

Messages say what to do next, and never carry a secret (see ``redaction``).
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of every engine error; ``kind`` is stable for logs and metadata."""

    kind = "error"


class ConfigurationError(SyncError):
    """The source or stream config (or its credentials) is wrong; fix it and run again."""

    kind = "config_error"


class CredentialsRefused(ConfigurationError):
    """The API, or its token endpoint, refused our credentials (401, 403, a refused login)."""


class TransientError(SyncError):
    """A failure that may pass on its own; ``retry_after`` is the server's hint in seconds."""

    kind = "transient_error"

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class SyncSystemError(SyncError):
    """The API answered something the stream's config cannot make sense of."""

    kind = "system_error"
