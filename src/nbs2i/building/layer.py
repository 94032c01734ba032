"""Write the notebook layer and the image config, and hand the engine only those.

When assemble would only move the notebooks into place, the new layer is just
files with known owners (the assemble user, group 0), modes (group = user),
and times (clamped to the commit time), below directories whose owners and
modes the builder declares. So nbs2i writes it: a sorted, deterministic tar;
its sha256 is the layer's diff id; the config is the base image's, with the
new layer, the build's CMD, environment and labels, and `created` set to the
commit time. The engine receives a `docker load` archive holding the manifest,
the config and this one layer (`load.py`: one archive every engine takes), so
no container is created, nothing is committed, and building the same commit
twice gives the same image, with the same config digest on every engine.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

from nbs2i import labels
from nbs2i.archive import tar_stream
from nbs2i.building.load import Layer, LoadRefused, canonical, load, lower_layers
from nbs2i.building.plan import BuildPlan, LayerPlan
from nbs2i.engine import Docker, HistoryEntry, ImageInfo
from nbs2i.image import created
from nbs2i.source import Source

__all__ = ["LAYER_PREFIX", "Layer", "LoadRefused", "history", "image_json", "write_image"]

LAYER_PREFIX = "nbs2i-layer-"


def write_layer(plan: BuildPlan, layer: LayerPlan, source: Source, into: Path) -> Layer:
    """The notebook layer as a tar file in `into`, hashed as it is written."""
    digest = hashlib.sha256()
    size = 0
    path = into / "layer.tar"
    with path.open("wb") as out:
        for chunk in tar_stream(
            source.root,
            uid=plan.uid,
            epoch=source.epoch,
            prefix=layer.notebook_dir.lstrip("/"),
            excludes=layer.excludes,
            dirs=layer.dirs,
        ):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return Layer(path, f"sha256:{digest.hexdigest()}", size)


def history(entries: list[HistoryEntry]) -> list[dict[str, object]]:
    """The base's history, oldest first, in the config's own shape. A step that
    added no bytes is marked as making no layer."""
    found: list[dict[str, object]] = []
    for entry in reversed(entries):
        item: dict[str, object] = {
            "created": created(entry.created) or created(0),
            "created_by": entry.created_by,
        }
        if entry.comment:
            item["comment"] = entry.comment
        if entry.size == 0:
            item["empty_layer"] = True
        found.append(item)
    return found


def image_json(
    plan: BuildPlan, base: ImageInfo, base_history: list[HistoryEntry], layer: Layer, epoch: int
) -> bytes:
    """The image config file, canonical JSON: its sha256 is the image id."""
    when = created(epoch)
    document = {
        "architecture": base.architecture or "amd64",
        "os": base.os or "linux",
        "config": plan.config.to_api(),
        "created": when,
        "history": [
            *history(base_history),
            {
                "created": when,
                "created_by": f"nbs2i build {plan.labels.get(labels.BUILD_SOURCE_LOCATION, '')}",
                "comment": "notebooks placed by nbs2i",
            },
        ],
        "rootfs": {"type": "layers", "diff_ids": [*base.layers, layer.diff_id]},
    }
    return canonical(document)


def write_image(engine: Docker, plan: BuildPlan, source: Source) -> str:
    """Write and load the image; the engine's id for it (the config's digest, or
    the manifest's on the containerd store). LoadRefused when the engine does not
    end up with exactly that image."""
    assert plan.layer is not None
    base = engine.inspect_image(plan.base)
    base_history = engine.history(base.id)
    epoch = source.epoch if source.epoch is not None else int(time.time())
    with tempfile.TemporaryDirectory(prefix=f"{LAYER_PREFIX}{os.getpid()}-") as tmp:
        layer = write_layer(plan, plan.layer, source, Path(tmp))
        config = image_json(plan, base, base_history, layer, epoch)
        return load(engine, plan.request.tag, config, lower_layers(engine, base), layer)
