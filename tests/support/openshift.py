"""OpenShift without a cluster: `oc process` of a Template, and the OpenShift
API's own schemas for the kinds Kubernetes has no schema for.

The schemas come from the OpenShift OpenAPI document that the npm package
openshift-rest-client ships (`make openshift-schema` fetches it with npm and
checks its hash); NBS2I_OPENSHIFT_OPENAPI=FILE (.json or .json.gz) uses
another one, such as openapi/openapi.json of the openshift/api repository.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import random
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = ROOT / ".cache" / "openshift-openapi-spec.json.gz"
_PARAM = re.compile(r"\$\{([A-Z0-9_]+)\}")
_NON_STRING_PARAM = re.compile(r"\$\{\{([A-Z0-9_]+)\}\}")
RAW_EXTENSION = "io.k8s.apimachinery.pkg.runtime.RawExtension"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
BUILD_CONFIG_SPEC = ".build.v1.BuildConfigSpec"
_GENERATOR = re.compile(r"\[([^\]]+)\]\{([0-9]+)\}")


class TemplateError(ValueError):
    """What `oc process` would refuse."""


def generate(expression: str, rng: random.Random) -> str:
    """OpenShift's `generate: expression` for the `[ranges]{count}` form."""
    match = _GENERATOR.fullmatch(expression)
    if not match:
        raise TemplateError(f"cannot generate from {expression!r}")
    alphabet = ""
    for start, _, end in re.findall(r"(.)(-(.))?", match.group(1)):
        alphabet += start if not end else "".join(map(chr, range(ord(start), ord(end) + 1)))
    return "".join(rng.choice(alphabet) for _ in range(int(match.group(2))))


def process(
    template: dict[str, Any], values: dict[str, str] | None = None, seed: int = 0
) -> list[dict[str, Any]]:
    """The template's objects with every `${PARAM}` replaced, as `oc process`
    does: given values, then defaults, then generated values; a required
    parameter without one is an error, as is a reference to an unknown one."""
    values = dict(values or {})
    rng = random.Random(seed)
    resolved: dict[str, str] = {}
    for param in template.get("parameters") or ():
        name = param["name"]
        value = values.pop(name, None)
        if value is None:
            value = param.get("value", "")
        if not value and param.get("generate") == "expression":
            value = generate(param["from"], rng)
        if not value and param.get("required"):
            raise TemplateError(f"parameter {name} is required and has no value")
        resolved[name] = value
    if values:
        raise TemplateError(f"unknown parameters given: {sorted(values)}")

    def substitute(node: Any) -> Any:
        if isinstance(node, dict):
            return {substitute(k): substitute(v) for k, v in node.items()}
        if isinstance(node, list):
            return [substitute(v) for v in node]
        if isinstance(node, str):
            if _NON_STRING_PARAM.search(node):
                raise TemplateError(f"non-string parameter in {node!r} is not handled here")
            return _PARAM.sub(lambda m: _lookup(resolved, m.group(1)), node)
        return node

    return [substitute(copy.deepcopy(obj)) for obj in template.get("objects") or ()]


def _lookup(resolved: dict[str, str], name: str) -> str:
    if name not in resolved:
        raise TemplateError(f"${{{name}}} names no parameter")
    return resolved[name]


def referenced(node: Any) -> set[str]:
    """Every parameter a template's text refers to."""
    return set(_PARAM.findall(json.dumps(node)))


# -- the OpenShift API's schemas ---------------------------------------------------


def spec_path() -> Path:
    path = Path(os.environ.get("NBS2I_OPENSHIFT_OPENAPI") or DEFAULT_SPEC)
    if not path.is_file():
        pytest.skip(
            f"the OpenShift OpenAPI document is not at {path} (fetched from npm by "
            "`make openshift-schema`, which `make test` runs)"
        )
    return path


@cache
def _definitions(path: Path) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        document = json.load(handle)
    definitions = document["definitions"]
    # What these types are on the wire (older documents describe their Go
    # structs): any object, and an integer or a string.
    definitions[RAW_EXTENSION] = {"type": "object"}
    definitions[INT_OR_STRING] = {"type": ["integer", "string"]}
    # Older documents mark fields "required" that merely lack omitempty in Go:
    # `status` (the server writes it) and BuildConfigSpec's nodeSelector (null
    # is fine). The API never demanded them; openshift/api's current document
    # no longer lists them.
    for name, definition in definitions.items():
        not_required = {"status"}
        if name.endswith(BUILD_CONFIG_SPEC):
            not_required.add("nodeSelector")
        if "required" in definition:
            definition["required"] = [r for r in definition["required"] if r not in not_required]
    for definition in definitions.values():
        _strict(definition)
    kinds = {}
    for name, definition in definitions.items():
        for gvk in definition.get("x-kubernetes-group-version-kind") or ():
            group = gvk.get("group", "")
            api_version = f"{group}/{gvk['version']}" if group else gvk["version"]
            kinds.setdefault((api_version, gvk["kind"]), name)
    return definitions, kinds


def _strict(schema: dict[str, Any]) -> None:
    """Unknown fields are errors, as kubernetes-validate --strict makes them,
    and a structure is an object (the documents often leave the type out)."""
    if "properties" in schema:
        schema.setdefault("additionalProperties", False)
        schema.setdefault("type", "object")
    for value in schema.get("properties", {}).values():
        _strict(value)
    if isinstance(schema.get("items"), dict):
        _strict(schema["items"])


def _by_name(definitions: dict[str, Any], obj: dict[str, Any]) -> str | None:
    """For documents without group-version-kind marks: OpenShift's naming,
    com.github.openshift.api.<group>.<version>.<Kind> for <group>.openshift.io."""
    group, _, version = obj["apiVersion"].rpartition("/")
    if not group.endswith(".openshift.io"):
        return None
    name = f"com.github.openshift.api.{group.split('.')[0]}.{version}.{obj['kind']}"
    return name if name in definitions else None


def validate(obj: dict[str, Any]) -> str:
    """Validate one object strictly against its OpenShift schema; the definition's name."""
    definitions, kinds = _definitions(spec_path())
    name = kinds.get((obj["apiVersion"], obj["kind"])) or _by_name(definitions, obj)
    if name is None:
        raise LookupError(f"no OpenShift schema for {obj['apiVersion']} {obj['kind']}")
    schema = {"$ref": f"#/definitions/{name}", "definitions": definitions}
    validator = jsonschema.Draft4Validator(schema, format_checker=None)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]]
        raise jsonschema.ValidationError(f"{obj['kind']} ({name}):\n" + "\n".join(lines))
    return name


def describe() -> str:
    """Which OpenShift API document the schemas came from, for messages."""
    path = spec_path()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        info = json.load(handle).get("info") or {}
    return f"{path.name}: {info.get('title', '?')} {info.get('version', '?')}"
