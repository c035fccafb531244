"""Every auth kind against the demo API; a refused credential is one request and a config error."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from sync_assets.demo_api import DemoApi, data
from sync_assets.errors import ConfigurationError
from sync_assets_tests.helpers import TOKEN, ClientFor, make_source, read_all
from sync_assets_tests.test_pagination import CUSTOMERS
from sync_assets_tests.test_rate_limit import STORES, _run_readers, _source_file

AUTH_KINDS: dict[str, dict[str, Any]] = {
    "bearer": {"type": "bearer", "token": {"env": "DEMO_TOKEN_FOR_TEST"}},
    "api_key_header": {"type": "api_key", "key": {"env": "DEMO_TOKEN_FOR_TEST"}},
    "api_key_query": {"type": "api_key", "key": {"env": "DEMO_TOKEN_FOR_TEST"}, "location": "query",
                      "name": "api_key"},
    "basic": {"type": "basic", "username": "someone", "password": {"env": "DEMO_TOKEN_FOR_TEST"}},
}


@pytest.mark.parametrize("kind", sorted(AUTH_KINDS))
def test_each_auth_kind_reads_the_stream(
    kind: str, api: DemoApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_TOKEN_FOR_TEST", TOKEN)
    records, _ = read_all(make_source(api, [CUSTOMERS], auth=AUTH_KINDS[kind]), "customers", tmp_path)
    assert records == data.all_customers(0, 230)


@pytest.mark.parametrize("kind", sorted(AUTH_KINDS))
def test_a_wrong_credential_is_a_configuration_error_without_retries(
    kind: str, api: DemoApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DEMO_TOKEN_FOR_TEST", "wrong-credential-value")
    with pytest.raises(ConfigurationError) as info:
        read_all(make_source(api, [CUSTOMERS], auth=AUTH_KINDS[kind]), "customers", tmp_path)
    message = str(info.value)
    assert "401" in message and "check the source's auth" in message
    assert "wrong-credential-value" not in message and "wrong-credential-value" not in caplog.text
    stats = requests.get(f"{api.url}/stats", timeout=5).json()
    assert stats["requests"] == 1 and stats["responses_401"] == 1  # no retry storm


# --- tokens that expire: OAuth2 (client credentials, refresh token) and a session login -------------------

def _renewing(api: DemoApi, kind: str, secret: str = TOKEN) -> dict[str, Any]:
    if kind == "session":
        return {"type": "session", "login_url": f"{api.url}/login", "token_path": "session.token",
                "expires_path": "expires_in", "body": {"username": "demo", "password": secret}}
    auth: dict[str, Any] = {"type": "oauth2", "token_url": f"{api.url}/oauth/token", "client_id": "demo-client",
                            "client_secret": secret, "scopes": ["read"]}
    if kind == "refresh_token":
        auth["refresh_token"] = secret
    return auth


SURVEYS = {"name": "surveys", "path": "/v3/surveys", "records_path": "data", "primary_key": "id",
           "paginator": {"type": "page_number", "size": 100, "total_path": "total"},
           "incremental": {"cursor_field": "date_modified", "start": "2024-01-01",
                           "start_param": "start_modified_at", "end_param": "end_modified_at"}}


@pytest.mark.parametrize("kind", ["client_credentials", "refresh_token", "session"])
def test_a_token_that_expires_is_renewed_under_a_concurrent_range(
    kind: str, demo_api: Callable[..., DemoApi], client_for: ClientFor, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from datetime import UTC, datetime

    from sync_assets.reader import StreamReader
    from sync_assets.storage import open_store
    from sync_assets.window_sync import sync_windows
    from sync_assets.windows import partition_key, windows_between

    # 81 windows read one by one (slicing: window), 4 at a time, 40 ms each: at least 0.8 s, so a 0.6 s
    # token must be renewed at least once
    api = demo_api(token_lifetime=0.6, latency_ms=40, surveys=400)
    windowed = {**SURVEYS, "incremental": {**SURVEYS["incremental"], "slicing": "window"}}
    source = make_source(api, [windowed], auth=_renewing(api, kind), concurrency=4)
    client, store = client_for(source), open_store(tmp_path / "store")
    days = [(partition_key(w.start, "daily"), w) for w in windows_between(
        datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 22, tzinfo=UTC), "daily")]
    assert len(days) == 81
    with caplog.at_level("DEBUG"):
        results = list(sync_windows(StreamReader(source, source.stream("surveys"), client), store, days, 4))
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    stats = api.stats()
    assert stats["tokens_issued"] >= 2  # renewed as it expired...
    assert stats["tokens_issued"] == stats["token_requests"] <= stats["requests"] / 4  # ...once for all threads
    assert stats["responses_401"] <= 1  # renewed before it expired (a request may still meet the edge once)
    assert caplog.records and not re.search(r"issued-[0-9a-f]{16}", caplog.text)  # no token in any log line


def test_a_refused_client_secret_is_a_configuration_error_before_any_data_request(
    demo_api: Callable[..., DemoApi], tmp_path: Path
) -> None:
    api = demo_api(token_lifetime=5)
    with pytest.raises(ConfigurationError) as error:
        read_all(make_source(api, [CUSTOMERS], auth=_renewing(api, "client_credentials", "wrong-secret")),
                 "customers", tmp_path)
    assert "token endpoint" in str(error.value) and "refused our credentials" in str(error.value)
    assert "wrong-secret" not in str(error.value)
    assert api.stats()["by_path"] == {}  # no request to the data endpoints


@pytest.mark.parametrize("kind", ["client_credentials", "session"])
def test_refused_credentials_are_sent_once_for_a_whole_concurrent_range(
    kind: str, demo_api: Callable[..., DemoApi], client_for: ClientFor, tmp_path: Path
) -> None:
    """Every window of a range needs a token; once the endpoint has refused ours, none asks again
    (a login retried by every window can lock the account)."""
    from datetime import UTC, datetime

    from sync_assets.reader import StreamReader
    from sync_assets.storage import open_store
    from sync_assets.window_sync import sync_windows
    from sync_assets.windows import partition_key, windows_between

    api = demo_api(token_lifetime=5, surveys=400)
    source = make_source(api, [SURVEYS], auth=_renewing(api, kind, "wrong-secret"), concurrency=4)
    client, store = client_for(source), open_store(tmp_path / "store")
    days = [(partition_key(w.start, "daily"), w) for w in windows_between(
        datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 13, tzinfo=UTC), "daily")]
    results = list(sync_windows(StreamReader(source, source.stream("surveys"), client), store, days, 4))
    assert len(results) == 12 and all(isinstance(r.error, ConfigurationError) for r in results)
    assert all("wrong-secret" not in str(r.error) for r in results)
    stats = api.stats()
    assert stats["token_requests"] == 1 and stats["tokens_issued"] == 0 and stats["by_path"] == {}
    store.close()


def test_a_token_revoked_mid_run_is_renewed_once_then_refused(demo_api: Callable[..., DemoApi], tmp_path: Path) -> None:
    api = demo_api(token_lifetime=60, revoke_after=3)
    with pytest.raises(ConfigurationError, match="refused our credentials"):
        read_all(make_source(api, [CUSTOMERS], auth=_renewing(api, "client_credentials")), "customers", tmp_path)
    stats = api.stats()
    assert stats["tokens_issued"] == 2 and stats["responses_401"] == 2  # the first token, one renewal, no storm


@pytest.mark.slow
@pytest.mark.parametrize("store", STORES)
def test_rotating_refresh_tokens_are_renewed_one_process_at_a_time_and_kept_for_the_next_run(
    store: dict[str, str], demo_api: Callable[..., DemoApi], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each refresh answers a new refresh token and kills the one used: three processes renewing at once must
    never send the same one twice, and a later run must start from the newest, wherever the budget lives."""
    api = demo_api(token_lifetime=0.4, latency_ms=30, rotate_refresh_tokens=True, customers=300)
    secret = {"env": "DEMO_TOKEN_FOR_TEST"}
    auth = {"type": "oauth2", "token_url": f"{api.url}/oauth/token", "client_id": "demo-client",
            "client_secret": secret, "refresh_token": secret, "rotating": True}
    source = yaml.safe_load(_source_file(tmp_path, api, store, f"t{uuid.uuid4().hex[:12]}").read_text())
    source.update(auth=auth, rate_limits=[])
    path = tmp_path / "rotating.yaml"
    path.write_text(yaml.safe_dump(source))
    state = tmp_path / "state"
    assert _run_readers(path, [state] * 3, tmp_path) == [data.all_customers(0, 300)] * 3  # 30 pages, ~1 s each
    first = api.stats()
    # every process renewed as its token expired, and not one refresh was refused
    assert first["tokens_issued"] >= 4 and first["token_requests"] == first["tokens_issued"], first
    assert _run_readers(path, [state], tmp_path) == [data.all_customers(0, 300)]  # the next run: the newest token
    assert api.stats()["token_requests"] == api.stats()["tokens_issued"]
    # the control: the token in the config was used up by the first refresh
    monkeypatch.setenv("DEMO_TOKEN_FOR_TEST", TOKEN)
    with pytest.raises(ConfigurationError, match="refused our credentials"):
        read_all(make_source(api, [CUSTOMERS], auth={**auth, "rotating": False}), "customers", tmp_path)
