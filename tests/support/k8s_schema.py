"""Kubernetes' own schemas, through kubernetes-validate (PyPI), strict: an
unknown field is an error, as `kubectl apply --validate=strict` makes it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate

# The newest Kubernetes release whose schemas the installed kubernetes-validate ships.
VERSION = kubernetes_validate.latest_version()
MINOR = ".".join(VERSION.split(".")[:2])
TOOL_VERSION = kubernetes_validate.__version__


def validate(obj: dict[str, Any]) -> str:
    """Raises kubernetes_validate.ValidationError; the version validated against."""
    return kubernetes_validate.validate(obj, VERSION, strict=True)


def knows(obj: dict[str, Any]) -> bool:
    try:
        validate(obj)
    except kubernetes_validate.SchemaNotFoundError:
        return False
    except kubernetes_validate.ValidationError:
        return True
    return True


def cli(files: Iterable[Path]) -> subprocess.CompletedProcess[str]:
    """`kubernetes-validate --strict FILE...` as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", VERSION, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
