"""The located safe YAML loader (netcalc.yamlsafe): values, marks and limits."""

from __future__ import annotations

import pytest

from netcalc.errors import Mark, SpecError
from netcalc.yamlsafe import LList, LMap, load


def test_each_scalar_style_resolves_on_its_own():
    # the loader caches tag resolution per (kind, value, style): a plain 3 and a quoted
    # '3' in one document must still be an int and a str, as yaml.safe_load gives
    data = load("a: 3\nb: '3'\nc: \"3\"\nd: 3\ne: true\nf: 'true'\ng: ~\nh: 0.5\n", "t.yaml")
    assert data == {"a": 3, "b": "3", "c": "3", "d": 3, "e": True, "f": "true", "g": None,
                    "h": 0.5}
    assert [type(data[k]) for k in "abcdefh"] == [int, str, str, int, bool, str, float]


def test_marks_are_one_based_line_and_column():
    data = load("layers:\n  - {name: c, Conv2d: 8}\n  - ReLU\n", "t.yaml")
    layers = data["layers"]
    assert isinstance(data, LMap) and isinstance(layers, LList)
    assert data.key_mark("layers") == Mark(1, 1)
    assert layers.item_mark(0) == Mark(2, 5) and layers.item_mark(1) == Mark(3, 5)
    assert layers[0].value_mark("Conv2d") == Mark(2, 23)  # the 8


def test_small_aliases_expand_and_bombs_are_refused():
    assert load("a: &x [1, 2]\nb: *x\n", "t.yaml") == {"a": [1, 2], "b": [1, 2]}
    bomb = "a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"
    with pytest.raises(SpecError, match=r"t.yaml:3:4: document expands to more than 50 YAML"):
        load(bomb, "t.yaml", limit=50)


def test_an_alias_without_an_anchor_is_a_syntax_error():
    # the expansion pre-check is skipped for texts without '&': they cannot share nodes
    with pytest.raises(SpecError, match=r"t.yaml:1:4: YAML syntax error: found undefined alias"):
        load("a: *x\n", "t.yaml")


def test_ints_resolve_as_yaml_safe_load_does():
    # the int fast path takes plain ASCII decimals only: YAML 1.1 octal and odd digits
    # go through PyYAML's constructor
    assert load("a: 0\nb: 10\nc: 010\nd: 0x10\ne: 1_000\n", "t.yaml") == {
        "a": 0, "b": 10, "c": 8, "d": 16, "e": 1000}
    with pytest.raises(SpecError, match=r"t.yaml:1:4: bad YAML value"):
        load('a: !!int "²"\n', "t.yaml")
