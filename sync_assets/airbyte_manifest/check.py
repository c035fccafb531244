"""``sync-assets manifest check PATH...``: whether each manifest translates, and what blocks it if not.

Manifests are checked without their real config: each field of the spec gets a stand-in of its type
(its default or first example when it has one), which is enough to find every component and template
the translation does not support. A stand-in date that the manifest reads in a format of its own is
written in that format; a config value it cannot read otherwise is reported as such, not as unsupported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync_assets.airbyte_manifest.resolve import read_manifest
from sync_assets.airbyte_manifest.translate import UnreadableDate, Unsupported, load_manifest
from sync_assets.errors import ConfigurationError
from sync_assets.spec import ApiSource

_STAND_INS = {"integer": 1, "number": 1, "boolean": False, "object": {}}
_STAND_IN_DAY = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Verdict:
    path: Path
    ok: bool
    summary: str


def stand_in_config(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = (manifest.get("spec") or {}).get("connection_specification") or {}
    return {key: _stand_in(prop) for key, prop in (spec.get("properties") or {}).items() if isinstance(prop, dict)}


def _stand_in(prop: dict[str, Any]) -> Any:
    if "default" in prop:
        return prop["default"]
    if prop.get("examples"):
        return prop["examples"][0]
    if prop.get("enum"):
        return prop["enum"][0]
    options = prop.get("oneOf") or prop.get("anyOf")
    if options and isinstance(options[0], dict):
        return {key: (value.get("const") if "const" in value else _stand_in(value))
                for key, value in (options[0].get("properties") or {}).items() if isinstance(value, dict)}
    kind = prop.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    if kind == "array":  # one item: a list of values that fans a stream out must not be empty
        return [_stand_in(prop["items"]) if isinstance(prop.get("items"), dict) else "x-check-stand-in"]
    if kind in _STAND_INS:
        return _STAND_INS[kind]
    if prop.get("format") == "date" or "%Y-%m-%d$" in str(prop.get("pattern_descriptor", "")):
        return "2024-01-01"
    pattern = str(prop.get("pattern") or "")
    if prop.get("format") == "date-time" or "T" in pattern or "date" in str(prop.get("title", "")).lower():
        return "2024-01-01T00:00:00Z" if "T" in pattern or prop.get("format") == "date-time" else "2024-01-01"
    return "x-check-stand-in"


def check(path: Path) -> Verdict:
    try:
        manifest = read_manifest(path)
        source = _load_with_stand_ins(path, stand_in_config(manifest))
    except Unsupported as exc:
        return Verdict(path, False, "unsupported: " + "; ".join(f"{where.split(': ', 1)[-1]}: {what}"
                                                                for what, where in exc.blockers))
    except ConfigurationError as exc:
        return Verdict(path, False, f"error: {str(exc).split(chr(10))[0]}")
    kinds = [source.describe(stream).split(":")[0].split(" on ")[0] for stream in source.streams]
    counted = ", ".join(f"{kinds.count(kind)} {kind}" for kind in dict.fromkeys(kinds))
    return Verdict(path, True, f"translates: {len(source.streams)} streams ({counted})")


def _load_with_stand_ins(path: Path, config: dict[str, Any]) -> ApiSource:
    """The manifest translated with stand-in values; a stand-in date the manifest reads in a format of its
    own (``%d/%m/%Y``, ``%Y%m%d``) is written in that format and the translation tried again."""
    for _ in range(len(config) + 1):
        try:
            return load_manifest(path, config)
        except UnreadableDate as exc:
            keys = [key for key, value in config.items() if value == exc.text]
            if not keys:
                raise
            config = {**config, **dict.fromkeys(keys, _formatted(_STAND_IN_DAY, exc.fmt))}
    return load_manifest(path, config)


def _formatted(day: datetime, fmt: str) -> str:
    if fmt in ("%s", "%ms"):
        return str(int(day.timestamp()) * (1000 if fmt == "%ms" else 1))
    return day.strftime(fmt) if fmt else day.isoformat()


def run(paths: list[str]) -> int:
    verdicts = [check(_manifest_path(Path(p))) for p in paths]
    for verdict in verdicts:
        print(f"{verdict.path}: {verdict.summary}")
    ok = sum(v.ok for v in verdicts)
    print(f"{ok} of {len(verdicts)} manifests translate")
    return 0 if ok == len(verdicts) else 2


def _manifest_path(path: Path) -> Path:
    return path / "manifest.yaml" if path.is_dir() else path
