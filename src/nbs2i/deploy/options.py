"""What `nbs2i deploy` is asked for, checked before anything is written."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace

from nbs2i import defaults, restricted
from nbs2i.errors import UsageError
from nbs2i.reference import DIGEST, ImageRef

TARGETS = defaults.DEPLOY_TARGETS
OPENSHIFT, KUBERNETES, ZERO_TO_JUPYTERHUB = TARGETS

# Object names get suffixes such as "-workspace" and "-builder" and must stay
# DNS labels (63 characters; Services and Routes are the strictest).
NAME_MAX = 40
_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_HOSTNAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
# Tokens end up in URLs and headers: nothing that needs escaping there.
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}")
# The prefixes the builder's run script accepts in JUPYTER_PASSWORD_HASH.
HASH_PREFIXES = ("argon2:", "sha1:", "sha256:", "sha512:")
TOKEN_BYTES = 24


@dataclass(frozen=True)
class DeployOptions:
    """One deployment. `image` is what runs (kubernetes, zero-to-jupyterhub) or
    the S2I builder that OpenShift builds with (openshift)."""

    target: str
    image: str = ""
    digest: str = ""  # pins `image`: the cluster pulls exactly what was pushed
    name: str = defaults.DEPLOY_NAME
    hostname: str = ""  # OpenShift's route; empty: the router makes one up
    storage: str = defaults.DEPLOY_STORAGE  # the workspace volume on HOME
    memory: str = defaults.DEPLOY_MEMORY  # requested and the limit: kernels run out first
    repository_url: str = ""  # OpenShift: the notebooks' Git repository
    ref: str = ""  # its branch or tag; empty: the default branch
    context_dir: str = ""
    uid: int | None = None  # None: the platform's (OpenShift) or the image's USER
    token: str = ""
    password_hash: str = ""  # `sha512:salt:hex`, as the builder's run script takes it


def check(options: DeployOptions) -> DeployOptions:
    """The options, or a UsageError that names the bad one."""
    for rule in (_check_target, _check_names, _check_sizes, _check_credentials):
        rule(options)
    return options


def _check_target(options: DeployOptions) -> None:
    if options.target not in TARGETS:
        raise UsageError(f"unknown target {options.target!r}", f"use one of {', '.join(TARGETS)}")
    if options.target != OPENSHIFT and not options.image:
        raise UsageError(
            f"the {options.target} target needs the image to run",
            f"nbs2i deploy {options.target} REGISTRY/NAME:TAG (what `nbs2i build --push` printed)",
        )
    if options.image:
        image_ref(options)
    if options.target == OPENSHIFT and options.digest:
        raise UsageError(
            "--digest pins the image a cluster runs; OpenShift builds its own",
            "pin the builder in the image argument instead: REGISTRY/BUILDER@sha256:...",
        )


def _check_names(options: DeployOptions) -> None:
    if not _NAME.fullmatch(options.name) or len(options.name) > NAME_MAX:
        raise UsageError(
            f"--name {options.name!r} cannot name Kubernetes objects",
            f"use lower-case letters, digits and '-', starting with a letter, "
            f"at most {NAME_MAX} characters",
        )
    host = options.hostname
    if host and (not _HOSTNAME.fullmatch(host) or len(host) > 253):
        raise UsageError(f"--hostname {host!r} is not a DNS name", "e.g. lab.example.org")


def _check_sizes(options: DeployOptions) -> None:
    for flag, quantity in (("--storage", options.storage), ("--memory", options.memory)):
        if not _QUANTITY.fullmatch(quantity):
            raise UsageError(f"{flag} {quantity!r} is not a size", "e.g. 512Mi, 1Gi, 10Gi")
    if options.uid is not None:
        restricted.check_uid(options.uid)


def _check_credentials(options: DeployOptions) -> None:
    if options.token and not _TOKEN.fullmatch(options.token):
        raise UsageError(
            "the token is too short or has characters that need escaping in a URL",
            "use 16 to 256 letters, digits and . _ ~ -",
        )
    if options.password_hash and not options.password_hash.startswith(HASH_PREFIXES):
        raise UsageError(
            "the password hash is not in Jupyter's form",
            "give algorithm:salt:hexdigest, e.g. from `nbs2i deploy ... --password`",
        )
    if options.target == ZERO_TO_JUPYTERHUB and (options.token or options.password_hash):
        raise UsageError(
            "zero-to-jupyterhub servers take their credentials from the hub",
            "configure the hub's authenticator; leave out --token and --password",
        )


def image_ref(options: DeployOptions) -> ImageRef:
    """The image, pinned by `digest` when one is given."""
    ref = ImageRef.parse(options.image)
    if not options.digest:
        return ref
    if not DIGEST.fullmatch(options.digest):
        raise UsageError(
            f"--digest {options.digest!r} is not sha256: and 64 hex digits",
            "give the digest `nbs2i build --push` printed",
        )
    if ref.digest and ref.digest != options.digest:
        raise UsageError(
            f"{options.image} already names digest {ref.digest}, not {options.digest}",
            "give the digest once",
        )
    return replace(ref, digest=options.digest)


def with_credentials(options: DeployOptions) -> DeployOptions:
    """The options with a fresh token when nothing else would let anyone in."""
    if options.target == KUBERNETES and not (options.token or options.password_hash):
        return replace(options, token=secrets.token_hex(TOKEN_BYTES))
    return options
