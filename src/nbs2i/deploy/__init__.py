"""`nbs2i deploy`: plain YAML that a cluster takes as it is.

- `openshift`: a Template (`oc new-app -f template.yaml -p REPOSITORY_URL=...`)
  that builds the notebooks in the cluster with the S2I builder and serves
  them behind a TLS edge route, under restricted-v2;
- `kubernetes`: a Deployment, Service, PersistentVolumeClaim and Secret that a
  namespace enforcing Pod Security "restricted" admits (`kubectl apply -f DIR`);
- `zero-to-jupyterhub`: values.yaml for the z2jh chart.

`write(options, output)` checks the options, renders and writes the files;
`render(options)` is the same without the disk. Nothing here talks to a
cluster or an engine.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nbs2i import restricted
from nbs2i.deploy import kubernetes, openshift, yamltext, zero_to_jupyterhub
from nbs2i.deploy.options import (
    KUBERNETES,
    OPENSHIFT,
    TARGETS,
    ZERO_TO_JUPYTERHUB,
    DeployOptions,
    check,
    image_ref,
    with_credentials,
)
from nbs2i.errors import UsageError

__all__ = [
    "KUBERNETES",
    "OPENSHIFT",
    "TARGETS",
    "ZERO_TO_JUPYTERHUB",
    "DeployOptions",
    "DeployResult",
    "Manifest",
    "next_steps",
    "options",
    "render",
    "write",
]

HEADER = "Written by nbs2i deploy {target}; regenerate rather than edit."
# Files with credentials in them are for their owner's eyes only.
SECRET_MODE = 0o600
FILE_MODE = 0o644


@dataclass(frozen=True)
class Manifest:
    filename: str
    text: str
    secret: bool = False


@dataclass(frozen=True)
class DeployResult:
    target: str
    name: str
    directory: Path
    files: tuple[Path, ...]
    image: str  # what the cluster pulls (the builder, for openshift)
    token: str  # "" when none was made or given here (openshift generates its own)


def options(target: str, image: str | None = None, **given: Any) -> DeployOptions:
    """DeployOptions from what a command line gave: None means the default.

    `password` (plain) is hashed here and never kept.
    """
    password = given.pop("password", None)
    known = {f.name for f in fields(DeployOptions)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(f"unknown deploy options: {', '.join(unknown)}")
    chosen = {k: v for k, v in given.items() if v is not None}
    if password:
        from nbs2i.run import password_hash

        chosen["password_hash"] = password_hash(password)
    if image is None and target == OPENSHIFT:
        image = default_builder()
    return check(DeployOptions(target=target, image=image or "", **chosen))


def default_builder() -> str:
    from nbs2i.builder import default_tags

    return default_tags()[0]


def render(opts: DeployOptions) -> tuple[Manifest, ...]:
    """The files of one target, by name. Deterministic: the same options give
    the same bytes (a token is made by `write`, not here)."""
    opts = check(opts)
    header = HEADER.format(target=opts.target)
    if opts.target == OPENSHIFT:
        builder = opts.image or default_builder()
        text = yamltext.dump(openshift.template(opts, builder), header)
        return (Manifest("template.yaml", text),)
    if opts.target == KUBERNETES:
        return tuple(
            Manifest(f"{kind.lower()}.yaml", yamltext.dump(obj, header), secret=kind == "Secret")
            for kind, obj in kubernetes.objects(opts).items()
        )
    text = yamltext.dump(zero_to_jupyterhub.values(opts), f"{header}\n{zero_to_jupyterhub.HEADER}")
    return (Manifest("values.yaml", text),)


def write(opts: DeployOptions, output: Path | str, *, force: bool = False) -> DeployResult:
    """Render `opts` into the directory `output` (made if missing). Refuses to
    replace existing files unless `force`: a new Secret would change the token
    of a running deployment."""
    opts = with_credentials(check(opts))
    manifests = render(opts)
    directory = Path(output)
    paths = [directory / m.filename for m in manifests]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise UsageError(
            f"{', '.join(existing)} already exist",
            "choose another --output, or --force to replace them",
        )
    directory.mkdir(parents=True, exist_ok=True)
    for path, manifest in zip(paths, manifests, strict=True):
        _write_file(path, manifest.text, SECRET_MODE if manifest.secret else FILE_MODE)
    image = opts.image or default_builder()
    if opts.target != OPENSHIFT:
        image = str(image_ref(opts))
    return DeployResult(opts.target, opts.name, directory, tuple(paths), image, opts.token)


def next_steps(result: DeployResult) -> tuple[str, ...]:
    """What to run with the files, one line each, for the command line to print."""
    where = shlex.quote(str(result.directory))
    if result.target == OPENSHIFT:
        template = shlex.quote(str(result.directory / "template.yaml"))
        return (
            f"oc new-app -f {template} -p REPOSITORY_URL=<git url>   (prints the generated token)",
            f"oc get route {result.name} -o jsonpath='{{.spec.host}}'",
        )
    if result.target == KUBERNETES:
        steps = [
            "kubectl label namespace <ns> pod-security.kubernetes.io/enforce=restricted",
            f"kubectl apply -n <ns> -f {where}",
            f"kubectl port-forward -n <ns> deployment/{result.name} "
            f"{restricted.SERVER_PORT}:{restricted.SERVER_PORT}",
        ]
        if result.token:
            steps.append(f"token: in {kubernetes.names(result.name)['secret']} (secret.yaml)")
        return tuple(steps)
    values = shlex.quote(str(result.directory / "values.yaml"))
    return (f"helm upgrade --install <release> jupyterhub/jupyterhub --values {values}",)


def _write_file(path: Path, text: str, mode: int) -> None:
    """Whole or not at all, and never readable by others even for a moment."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(partial, mode)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
