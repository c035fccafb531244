"""Sources bundled with the package: the demo source, declared in YAML like most users' sources."""

from __future__ import annotations

from pathlib import Path

from sync_assets.spec import ApiSource, load_source

DEMO_SOURCE_PATH = Path(__file__).with_name("demo.yaml")
STRIPE_STYLE_SOURCE_PATH = Path(__file__).with_name("stripe_style.yaml")
GITHUB_STYLE_SOURCE_PATH = Path(__file__).with_name("github_style.yaml")


def demo_source() -> ApiSource:
    """The demo API's source; reads SYNC_ASSETS_DEMO_URL / SYNC_ASSETS_DEMO_TOKEN when a client is built."""
    return load_source(DEMO_SOURCE_PATH)


def stripe_style_source() -> ApiSource:
    """A Stripe-style source (windows in ``created[gte]``/``created[lt]``, ``starting_after`` pages), served by the
    demo API at ``/v1/charges``; the same env variables as the demo source."""
    return load_source(STRIPE_STYLE_SOURCE_PATH)


def github_style_source() -> ApiSource:
    """A GitHub-style source (``since``, oldest first, ``Link`` pages, x-ratelimit headers), served by the demo
    API at ``/repos/demo/issues``; the same env variables as the demo source."""
    return load_source(GITHUB_STYLE_SOURCE_PATH)
