"""Jinja as the CDK evaluates it: literals read back, its macros, undefined values, and the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync_assets.airbyte_manifest.interpolation import Template, TemplateFailed, format_datetime, parse_duration
from sync_assets.errors import ConfigurationError


def test_rendered_text_is_read_back_as_the_python_literal_it_spells() -> None:
    config = {"page_size": 50, "flags": {"on": True}, "name": "x"}
    assert Template("{{ config['page_size'] }}").eval({"config": config}) == 50
    assert Template("{{ config.flags.on }}").eval({"config": config}) is True
    assert Template("{{ config.name }}").eval({"config": config}) == "x"
    assert Template("{{ config.missing }}").eval({"config": config}, default="fallback") == "fallback"
    assert Template("{{ stream_partition.id }}").render({"stream_slice": {"id": 7}}) == "7"  # the CDK's aliases


def test_the_macros_and_filters_of_the_cdk() -> None:
    now = datetime.now(UTC)
    assert Template("{{ now_utc().year }}").eval({}) == now.year
    assert Template("{{ max(2, 3) }}").eval({}) == 3
    assert Template("{{ duration('P2D').days }}").eval({}) == 2
    assert Template("{{ 'abc' | hash('md5') }}").eval({}) == "900150983cd24fb0d6963f7d28e17f72"
    assert Template("{{ 'ab' | base64encode }}").eval({}) == "YWI="
    assert format_datetime("2024-01-02T03:04:05Z", "%s") == "1704164645"
    assert format_datetime("2024-01-02T03:04:05Z", "%Y/%m/%d") == "2024/01/02"
    assert parse_duration("PT1H").total_seconds() == 3600
    with pytest.raises(ConfigurationError, match="ISO 8601 duration"):
        parse_duration("soon")


def test_the_sandbox_keeps_templates_away_from_python_internals() -> None:
    with pytest.raises(TemplateFailed, match="SecurityError"):
        Template("{{ ''.__class__.__mro__[1].__subclasses__() }}").render({})
    with pytest.raises(ConfigurationError, match="uses range"):
        Template("{{ range(10) | list }}").render({})  # removed, as in the CDK
    with pytest.raises(ConfigurationError, match="uses response"):
        Template("{{ response.next }}", "somewhere").render({})
