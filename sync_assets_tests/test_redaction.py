"""Secrets are masked in URLs, messages and log lines."""

from __future__ import annotations

import logging

import pytest

from sync_assets.redaction import get_logger, mask, mask_url, register_secret, strip_query_params


def test_secret_query_params_and_userinfo_are_masked() -> None:
    url = "https://user:pw@api.example.com/v1/x?api_key=abc123&page=2&access_token=zzz&sig=q"
    masked = mask_url(url)
    assert "abc123" not in masked and "zzz" not in masked and "pw" not in masked
    assert "page=2" in masked and "api_key=***" in masked


def test_registered_secrets_are_masked_anywhere() -> None:
    register_secret("tok-0123456789")
    assert mask("Authorization: Bearer tok-0123456789!") == "Authorization: Bearer ***!"


def test_log_lines_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("log-secret-value")
    log = get_logger("sync_assets.test_redaction")
    with caplog.at_level(logging.INFO, logger="sync_assets.test_redaction"):
        log.info("sending %s", "Bearer log-secret-value")
    assert "log-secret-value" not in caplog.text and "Bearer ***" in caplog.text


def test_strip_query_params_keeps_the_rest() -> None:
    assert strip_query_params("http://h/p?a=1&api_key=k&b=2", {"api_key"}) == "http://h/p?a=1&b=2"


def test_url_encoded_forms_of_a_secret_are_masked_too() -> None:
    register_secret("Ab+c/d==xyz123")
    url = "https://api.example.com/v1/x?jwt=Ab%2Bc%2Fd%3D%3Dxyz123&page=2"
    assert "xyz123" not in mask_url(url) and "page=2" in mask_url(url)
