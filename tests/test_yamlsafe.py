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
    # refused at the alias that crosses the limit, without expanding anything
    with pytest.raises(SpecError, match=r"t.yaml:3:5: document expands to more than 50 YAML"):
        load(bomb, "t.yaml", limit=50)


def test_an_alias_without_an_anchor_is_a_syntax_error():
    # the expansion pre-check is skipped for texts without '&': they cannot share nodes
    with pytest.raises(SpecError, match=r"t.yaml:1:4: YAML syntax error: found undefined alias"):
        load("a: *x\n", "t.yaml")


def test_ints_resolve_as_yaml_safe_load_does():
    # the int fast path takes plain ASCII decimals only: YAML 1.1 octal, hex and
    # sexagesimal go through PyYAML's constructor
    assert load("a: 0\nb: 10\nc: 010\nd: 0x10\ne: 1_000\nf: 1:30\n", "t.yaml") == {
        "a": 0, "b": 10, "c": 8, "d": 16, "e": 1000, "f": 90}


def test_aliases_share_the_anchored_value_and_recursive_ones_are_refused():
    data = load("a: &x {k: 1}\nb: [*x, *x]\n", "t.yaml")
    assert data["b"][0] is data["a"] and data["b"].item_mark(1) == Mark(2, 9)
    with pytest.raises(SpecError, match=r"t.yaml:1:5: YAML syntax error: found undefined alias"):
        load("&a [*a]\n", "t.yaml")


def test_nodes_are_counted_while_reading_not_after():
    # a long plain list is no alias bomb: the message says what it is, at the 51st node
    # (the mapping, its key, the list, then 48 items)
    text = "layers:\n" + "  - ReLU\n" * 100
    with pytest.raises(SpecError, match=r"t.yaml:49:5: the document has more than 50 YAML "
                                        r"nodes$"):
        load(text, "t.yaml", limit=50)


def test_nesting_is_bounded_before_the_recursion_limit():
    assert load("[" * 5 + "]" * 5, "t.yaml", max_depth=5) == [[[[[]]]]]
    with pytest.raises(SpecError, match=r"t.yaml:1:6: YAML nested more than 5 deep"):
        load("[" * 6 + "]" * 6, "t.yaml", max_depth=5)
    with pytest.raises(SpecError, match=r"YAML nested more than 100 deep"):
        load("a: " + "[" * 990 + "]" * 990, "t.yaml")


@pytest.mark.parametrize("text", ["a: !!binary aGk=\n", "a: !!int '3'\n", "a: !!str x\n",
                                  "a: ! x\n", "a: !foo {}\n", "a: !!set {x}\n"])
def test_no_tags_at_all(text):
    with pytest.raises(SpecError, match=r"t.yaml:1:4: YAML tag '.*' is not allowed"):
        load(text, "t.yaml")


def test_timestamps_and_equals_stay_strings():
    assert load("a: 2024-01-01\nb: 2024-01-01 10:00:00\nc: =\n", "t.yaml") == {
        "a": "2024-01-01", "b": "2024-01-01 10:00:00", "c": "="}


def test_integers_are_bounded_in_digits():
    assert load(f"a: {10**29}\nb: -{10**29}\n", "t.yaml") == {"a": 10**29, "b": -10**29}
    with pytest.raises(SpecError, match=r"t.yaml:1:4: an integer of 5,000 digits \(at most 30\)"):
        load("a: " + "9" * 5000 + "\n", "t.yaml")
    with pytest.raises(SpecError, match=r"t.yaml:1:4: an integer of 31 digits"):
        load("a: 0x" + "f" * 29 + "\n", "t.yaml")


def test_one_document_only():
    with pytest.raises(SpecError, match=r"t.yaml:2:1: a spec is one YAML document"):
        load("a: 1\n---\nb: 2\n", "t.yaml")
