"""Courses of small notebooks for the tests that run them (`nbs2i test`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PYTHON = ("python3", "python")
R = ("ir", "R")


def notebook(*cells: str, kernel: tuple[str, str] = PYTHON) -> dict[str, Any]:
    """A notebook: a markdown title, then one code cell per argument."""
    name, language = kernel
    code = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": c}
        for c in cells
    ]
    return {
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": "# A lecture"}, *code],
        "metadata": {"kernelspec": {"name": name, "display_name": name, "language": language}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write_course(root: Path, notebooks: dict[str, dict[str, Any] | str]) -> Path:
    """Each notebook (or text file) at its path under root."""
    for rel, content in notebooks.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return root
