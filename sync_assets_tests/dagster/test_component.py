"""The dg component builds the same definitions from a defs.yaml as build_definitions does."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from dagster import AssetKey
from dagster.components.testing import create_defs_folder_sandbox

from sync_assets.sources import DEMO_SOURCE_PATH


def test_a_defs_yaml_naming_a_source_file_loads_its_assets() -> None:
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "demo_api"
        folder.mkdir()
        shutil.copy(DEMO_SOURCE_PATH, folder / "demo.yaml")
        (folder / "defs.yaml").write_text(yaml.safe_dump({
            "type": "sync_assets.dagster.SyncAssetsComponent",
            "attributes": {"source": "demo.yaml", "schedule_lookback": 3, "enable_asset_checks": False},
        }))
        with sandbox.load_component_and_build_defs(defs_path=folder) as (_, defs):
            keys = {spec.key for spec in defs.resolve_all_asset_specs()}
            assert AssetKey(["demo", "surveys"]) in keys and AssetKey(["demo", "customers"]) in keys
            assert {s.name for s in defs.schedules or []} == {"demo_schedule"}
            assert sorted(defs.resources or {}) == ["demo_api", "sync_store"]
            assert not [spec for assets in defs.assets or [] for spec in getattr(assets, "check_specs", [])]


def test_a_defs_yaml_naming_a_source_that_names_an_airbyte_manifest_loads_its_streams() -> None:
    manifest = Path(__file__).parents[1] / "airbyte_manifest" / "manifests" / "demo" / "manifest.yaml"
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "from_manifest"
        folder.mkdir()
        shutil.copy(manifest, folder / "manifest.yaml")
        (folder / "source.yaml").write_text(yaml.safe_dump({
            "name": "demo_manifest", "manifest": "manifest.yaml",
            "config": {"base_url": "http://127.0.0.1:8765", "api_key": {"env": "DEMO_KEY"}, "start_date": "2024-01-01"},
        }))
        (folder / "defs.yaml").write_text(yaml.safe_dump({
            "type": "sync_assets.dagster.SyncAssetsComponent", "attributes": {"source": "source.yaml"}}))
        with sandbox.load_component_and_build_defs(defs_path=folder) as (_, defs):
            keys = {spec.key for spec in defs.resolve_all_asset_specs()}
            assert {AssetKey(["demo_manifest", name]) for name in ("surveys", "all_survey_responses")} <= keys
