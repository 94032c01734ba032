"""Just enough YAML to write manifests, with no YAML library at run time.

Block style, keys in the order the code built them, every string as a JSON
double-quoted string: JSON strings are YAML strings, so nothing a user types
(a `yes`, a `0755`, a `#`, a `: `) can turn into a boolean, a number or a
comment. The same data always gives the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

INDENT = "  "
# Keys that read the same in every YAML version when left unquoted.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")
# Words that YAML 1.1 readers (PyYAML, Helm's go-yaml v2) take for booleans or null.
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
# Characters YAML does not allow raw inside a double-quoted scalar, though JSON does.
# (NEL and the Unicode separators would be read as line breaks.)
_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


class YamlError(TypeError):
    """A value this emitter does not write (only JSON's types are manifests)."""


def dump(document: Any, header: str = "") -> str:
    """One YAML document; `header` lines become comments above it."""
    return "\n".join([*_comments(header), *_block(document, 0)]) + "\n"


def _comments(header: str) -> list[str]:
    return [f"# {line}".rstrip() for line in header.splitlines()]


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return quote(value)
    # Floats too: YAML 1.1 readers take 1e-05 for a string. Manifests write
    # quantities as strings.
    raise YamlError(f"cannot write {type(value).__name__} {value!r} as YAML")


def quote(text: str) -> str:
    """A JSON string, with the few characters YAML wants escaped escaped."""
    return _UNPRINTABLE.sub(_escape, json.dumps(text, ensure_ascii=False))


def key(name: Any) -> str:
    if not isinstance(name, str):
        raise YamlError(f"mapping keys must be strings, not {name!r}")
    if _PLAIN_KEY.fullmatch(name) and name.lower() not in _RESERVED:
        return name
    return quote(name)


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _is_block(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple) and len(value) > 0


def _block(value: Any, depth: int) -> list[str]:
    pad = INDENT * depth
    if isinstance(value, Mapping):
        if not value:
            return [f"{pad}{{}}"]
        return [line for k, v in value.items() for line in _entry(pad + key(k) + ":", v, depth)]
    if isinstance(value, list | tuple):
        if not value:
            return [f"{pad}[]"]
        return [line for item in value for line in _item(item, depth)]
    return [pad + scalar(value)]


def _entry(head: str, value: Any, depth: int) -> list[str]:
    if _is_block(value):
        return [head, *_block(value, depth + 1)]
    return [f"{head} {_inline(value)}"]


def _item(value: Any, depth: int) -> list[str]:
    """A sequence entry: the first line of a nested block goes after the dash."""
    pad = INDENT * depth
    if not _is_block(value):
        return [f"{pad}- {_inline(value)}"]
    inner = _block(value, depth + 1)
    first = inner[0][len(INDENT * (depth + 1)) :]
    return [f"{pad}- {first}", *inner[1:]]


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        return "[]"
    return scalar(value)
