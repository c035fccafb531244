"""Where records are found in a response."""

from __future__ import annotations

from sync_assets.records import dig, dig_matches


def test_a_star_step_takes_every_item_or_value_and_flattens_the_lists_it_finds() -> None:
    body = {"items": [{"id": 1, "snippet": {"t": "a"}}, {"id": 2, "snippet": {"t": "b"}}, {"id": 3}],
            "groups": {"x": {"types": [{"n": 1}, {"n": 2}]}, "y": {"types": [{"n": 3}]}}}
    assert dig_matches(body, "items.*.snippet") == [{"t": "a"}, {"t": "b"}]  # no snippet: nothing, not None
    assert dig_matches(body, "groups.*.types") == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert dig_matches(body, "groups.*") == [{"types": [{"n": 1}, {"n": 2}]}, {"types": [{"n": 3}]}]
    assert dig_matches(body, "missing.*") == []
    assert dig(body, "items.1.id") == 2 and dig(body, "items.9.id") is None
