"""Every auth kind against the demo API; a refused credential is one request and a config error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from sync_assets.demo_api import DemoApi, data
from sync_assets.errors import ConfigurationError
from sync_assets_tests.helpers import TOKEN, make_source, read_all
from sync_assets_tests.test_pagination import CUSTOMERS

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
