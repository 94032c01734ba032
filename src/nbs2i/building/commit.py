"""A container committed as exactly the image nbs2i planned, on every engine.

An engine's commit is its own merge of the config asked for with the
container's: Docker adds the container's variables and labels that the config
lacks (the plan names them all, so nothing is added), podman's Docker API
ignores the config and keeps the container's command, user and environment
(with TERM and container=podman). So the committed image is inspected, and
when its config is not the one planned, the config is written over the
committed layers as the written layer's is: a config-only image loaded
through `load.py`, whose id the engine must give it. The image the commit made
is then removed.
"""

from __future__ import annotations

import contextlib

from nbs2i.building.layer import history
from nbs2i.building.load import canonical, load, lower_layers
from nbs2i.engine import Docker, ImageConfig, ImageInfo
from nbs2i.errors import BuildError, EngineError


def commit(engine: Docker, container: str, ref: str, config: ImageConfig, message: str) -> str:
    """Commit `container` as `ref` with exactly `config`; the engine's id for the image."""
    engine.commit(container, ref, config, message)
    made = engine.inspect_image(ref)
    if made.config.to_api() == config.to_api():
        return made.id
    try:
        written = _config_over(engine, made, config)
        fixed = load(engine, ref, written, lower_layers(engine, made), None)
    except EngineError as exc:
        with contextlib.suppress(EngineError):
            engine.remove_image(made.id, force=True)
        raise BuildError(
            f"the engine committed {ref} with another config than asked, and did not take "
            f"the config nbs2i wrote over it: {exc.problem}",
            "report the engine and its version (`nbs2i engine`)",
        ) from exc
    if fixed != made.id:
        with contextlib.suppress(EngineError):
            engine.remove_image(made.id)
    return fixed


def _config_over(engine: Docker, made: ImageInfo, config: ImageConfig) -> bytes:
    """The image config file of `made` (its layers, history and time) with `config`."""
    document = {
        "architecture": made.architecture or "amd64",
        "os": made.os or "linux",
        "config": config.to_api(),
        "created": made.created,
        "history": history(engine.history(made.id)),
        "rootfs": {"type": "layers", "diff_ids": list(made.layers)},
    }
    return canonical(document)
