"""Airbyte low-code connector manifests as sources of this engine.

``load_manifest("manifest.yaml", config={...})`` returns an ``ApiSource``, the model every front door
already takes (``build_definitions``, ``sync-assets read``, ``sync-assets airbyte``). Nothing of
Airbyte's CDK runs: the manifest is translated onto the engine's own settings, so its streams get date
windows, page checkpoints, budgets shared by every process and typed tables. See
docs/airbyte-manifests.md for what is supported and what differs from Airbyte.

- ``resolve``: references, default types and ``$parameters``, as the CDK resolves them;
- ``interpolation``: Jinja as the CDK evaluates it (sandboxed, its macros and filters);
- ``translate``: the components onto engine models, or ``Unsupported`` naming what blocks;
- ``parts``: what stays Jinja per response or record, behind the engine's plug-in protocols;
- ``check``: ``sync-assets manifest check``, which tells for each manifest whether it translates.
"""

from sync_assets.airbyte_manifest.translate import Unsupported, load_manifest

__all__ = ["Unsupported", "load_manifest"]
