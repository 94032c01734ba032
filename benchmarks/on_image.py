"""What the benchmarks that time one built image share: the image argument
(default: the one `make demo` builds), a check that it exists, and failures as
one line on stderr.

    from on_image import DEFAULT_IMAGE, measure_image
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from nbs2i.engine import Engine
from nbs2i.errors import Nbs2iError

DEFAULT_IMAGE = "nbs2i-demo/sample-notebooks:latest"


def measure_image(
    script: str,
    image: str,
    measure: Callable[[Engine, str], dict[str, Any]],
    failures: tuple[type[Exception], ...] = (),
) -> dict[str, Any] | int:
    """`measure(engine, image)`'s figures, or the exit code after saying why not."""
    try:
        with Engine.connect() as engine:
            if not engine.image_exists(image):
                print(
                    f"{script}: image {image} does not exist: build it first (`make demo`), "
                    "or name one",
                    file=sys.stderr,
                )
                return 2
            return measure(engine, image)
    except (Nbs2iError, *failures) as exc:
        print(f"{script}: {exc}", file=sys.stderr)
        return 1
