"""The YAML emitter: what it writes reads back as exactly what was given."""

from __future__ import annotations

import pytest
import yaml

from nbs2i.deploy import yamltext

TRICKY = [
    "",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "null",
    "~",
    "true",
    "0755",
    "0x1f",
    "1e3",
    ".inf",
    "12:30:00",
    "2026-01-01",
    "# not a comment",
    "a: b",
    "- item",
    "{braces}",
    "[brackets]",
    "&anchor",
    "*alias",
    "!tag",
    "%directive",
    "@at",
    "`backtick`",
    'quote " and backslash \\',
    "single ' quote",
    "line\nbreak",
    "tab\there",
    "trailing space ",
    " leading space",
    "ümlaut ß 中文",
    "emoji 🙂",
    "bell \x07 and nul \x00",
    "del \x7f and c1 \x85 \x9f",
    "separators \u2028 \u2029",
    "bom \ufeff",
    "${PARAM}",
]


@pytest.mark.parametrize("text", TRICKY)
def test_strings_read_back_unchanged(text: str) -> None:
    doc = {"value": text, "list": [text], "nested": {"key": text}}
    assert yaml.safe_load(yamltext.dump(doc)) == doc


@pytest.mark.parametrize("name", ["yes", "No", "on", "null", "a b", "a:b", "1st", "-x", "", "é"])
def test_keys_that_yaml_would_misread_are_quoted(name: str) -> None:
    doc = {name: "v"}
    assert yaml.safe_load(yamltext.dump(doc)) == doc


def test_plain_keys_stay_plain() -> None:
    text = yamltext.dump({"apiVersion": "v1", "app.kubernetes.io/name": "x"})
    assert text == 'apiVersion: "v1"\napp.kubernetes.io/name: "x"\n'


def test_every_shape_reads_back() -> None:
    doc = {
        "none": None,
        "t": True,
        "f": False,
        "zero": 0,
        "negative": -5,
        "big": 2**40,
        "empty_map": {},
        "empty_list": [],
        "list_of_maps": [{"a": 1, "b": [1, 2]}, {"c": {"d": "e"}}],
        "list_of_lists": [[1, 2], [], [[3]]],
        "map_in_list_in_map": {"x": [{"y": [{"z": None}]}]},
    }
    assert yaml.safe_load(yamltext.dump(doc)) == doc


def test_top_level_list_and_scalar() -> None:
    assert yaml.safe_load(yamltext.dump([1, {"a": "b"}])) == [1, {"a": "b"}]
    assert yaml.safe_load(yamltext.dump("yes")) == "yes"


def test_block_style_and_indentation() -> None:
    text = yamltext.dump({"spec": {"containers": [{"name": "n", "ports": [8888]}]}})
    assert text == ('spec:\n  containers:\n    - name: "n"\n      ports:\n        - 8888\n')


def test_header_becomes_comments_and_output_is_deterministic() -> None:
    doc = {"b": 1, "a": [1, {"z": "y"}]}
    text = yamltext.dump(doc, "line one\nline two")
    assert text.startswith("# line one\n# line two\nb: 1\n")
    assert yamltext.dump(doc, "line one\nline two") == text
    assert yaml.safe_load(text) == doc


@pytest.mark.parametrize("value", [1.5, b"bytes", {1, 2}, object()])
def test_values_without_a_safe_form_are_refused(value: object) -> None:
    with pytest.raises(yamltext.YamlError):
        yamltext.dump({"v": value})


def test_non_string_keys_are_refused() -> None:
    with pytest.raises(yamltext.YamlError):
        yamltext.dump({1: "v"})
