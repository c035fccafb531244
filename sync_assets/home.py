"""Where sync-assets keeps its files when nothing else is said: the store, and the shared rate-limit state.

Apart from ``storage.layout`` (which names what lies inside) so that what only reads an API (``sync-assets
read``, the rate limiter) finds its folder without loading storage.
"""

from __future__ import annotations

import os
from pathlib import Path


def sync_assets_home() -> Path:
    """``SYNC_ASSETS_HOME`` wins; under Dagster it is ``<DAGSTER_HOME>/sync_assets``, so that every run
    and step process of one instance shares one store and one rate-limit budget."""
    if os.environ.get("SYNC_ASSETS_HOME"):
        return Path(os.environ["SYNC_ASSETS_HOME"])
    if os.environ.get("DAGSTER_HOME"):
        return home_under(Path(os.environ["DAGSTER_HOME"]))
    return Path.home() / ".sync_assets"


def home_under(instance_dir: Path) -> Path:
    """sync-assets' folder inside a Dagster instance's directory."""
    return instance_dir / "sync_assets"
