"""A source as a ``dg`` component: the low-code route for projects laid out with a ``defs/`` folder.

    # defs/shop/defs.yaml
    type: sync_assets.dagster.SyncAssetsComponent
    attributes:
      source: shop.yaml          # next to this defs.yaml; or an absolute path, or module:attribute
      schedule_lookback: 2
      enable_asset_checks: false  # no per-partition check events, for runs of thousands of partitions

It builds exactly what ``build_definitions`` builds for that source.
"""

# No `from __future__ import annotations`: Dagster resolves the attribute annotations at load time.

from datetime import timedelta
from pathlib import Path

from dagster import Component, ComponentLoadContext, Definitions, Model, Resolvable
from pydantic import Field

from sync_assets.dagster.factory import build_definitions
from sync_assets.dagster.translator import SyncAssetsTranslator
from sync_assets.spec import load_source


class SyncAssetsComponent(Component, Resolvable, Model):
    """Assets, resources, schedule and sensor for one sync-assets source."""

    source: str = Field(description="Source YAML (relative to this component's folder) or module:attribute.")
    schedule_lookback: int = Field(2, ge=1, description="Windows the schedule re-syncs for late data.")
    refresh_every_hours: float = Field(24, gt=0, description="How often the sensor starts a full refresh.")
    enable_asset_checks: bool = Field(True, description="The assets' checks (schema_drift, unique_primary_key); "
                                      "off, each run logs one warning instead of two events per partition.")

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        local = Path(context.path) / self.source
        source = load_source(local if local.suffix in (".yaml", ".yml") else self.source)
        return build_definitions(source, SyncAssetsTranslator(enable_asset_checks=self.enable_asset_checks),
                                 schedule_lookback=self.schedule_lookback,
                                 refresh_every=timedelta(hours=self.refresh_every_hours))
