"""Safe YAML loading that keeps line and column marks.

``yaml.compose`` (with the safe loader, the C one when libyaml is present) builds a
node tree without constructing any Python object; we turn it into plain data whose
mappings and lists remember where each key and value came from. Aliases are shared
nodes, so a "billion laughs" document is small to compose but huge to expand: we
count every node we expand and stop at a limit.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import Mark, SpecError
from .perf import paused_gc

try:  # libyaml is several times faster and keeps marks just the same
    _SafeLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pure-Python PyYAML
    _SafeLoader = yaml.SafeLoader


class _Loader(_SafeLoader):  # type: ignore[misc,valid-type]
    """The safe loader, resolving each distinct scalar once.

    PyYAML's resolver is Python (regexes per plain scalar) even under libyaml, and a
    large spec repeats few distinct scalars: ``Conv2d``, ``3``, ``true``.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._tags: dict[tuple, str] = {}

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        key = (kind, value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = super().resolve(kind, value, implicit)
        return tag

MAX_YAML_NODES = 1_000_000
_STR, _INT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int"
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class LMap(dict):
    """A mapping that remembers the marks of its keys and values."""

    mark: Mark
    key_marks: dict[Any, Mark]
    value_marks: dict[Any, Mark]

    def key_mark(self, key: Any) -> Mark:
        return self.key_marks.get(key, self.mark)

    def value_mark(self, key: Any) -> Mark:
        return self.value_marks.get(key, self.mark)


class LList(list):
    """A list that remembers the marks of its items."""

    mark: Mark
    marks: list[Mark]

    def item_mark(self, i: int) -> Mark:
        return self.marks[i] if 0 <= i < len(self.marks) else self.mark


def mark_of(value: Any, default: Mark) -> Mark:
    return getattr(value, "mark", default)


class _Builder:
    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node) -> Any:
        self.count += 1
        if self.count > self.limit:
            raise SpecError(
                f"document expands to more than {self.limit:,} YAML nodes (alias bomb?)",
                _mark(node),
            )
        if type(node) is yaml.ScalarNode:
            return self.scalar(node)
        if node.tag not in _PLAIN_TAGS:
            raise SpecError(f"YAML tag {node.tag!r} is not allowed (plain data only)", _mark(node))
        if type(node) is yaml.MappingNode:
            out = LMap()
            out.mark, out.key_marks, out.value_marks = _mark(node), {}, {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise SpecError("YAML merge keys (<<) are not supported", _mark(key_node))
                key = self.build(key_node)
                if isinstance(key, (LMap, LList)):
                    raise SpecError("mapping keys must be scalars", _mark(key_node))
                if key in out:
                    raise SpecError(f"duplicate key {key!r}", _mark(key_node))
                out[key] = self.build(value_node)
                out.key_marks[key] = _mark(key_node)
                out.value_marks[key] = _mark(value_node)
            return out
        items = LList()  # a SequenceNode: the only kind left
        items.mark, items.marks = _mark(node), []
        for item in node.value:
            items.append(self.build(item))
            items.marks.append(_mark(item))
        return items

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == _STR:  # fast paths for the common plain scalars
            return node.value
        value = node.value
        if node.tag == _INT and value.isascii() and value.isdigit() and value[0] != "0":
            return int(value)  # plain decimal; 0, 010 (YAML 1.1 octal) etc. go the long way
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise SpecError(f"bad YAML value: {exc.problem or exc}", _mark(node)) from None
        except ValueError as exc:  # PyYAML's own int/float parsing, e.g. !!int "²"
            raise SpecError(f"bad YAML value {value!r}: {exc}", _mark(node)) from None


def _check_expansion(root: yaml.Node, limit: int) -> None:
    """Refuse documents whose aliases expand past ``limit`` nodes, before expanding them.

    Sizes are memoised per node object, so this costs one visit per distinct node.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value))
        if done:
            size = 1 + sum(sizes.get(id(c), 0) for c in children)
            if size > limit:
                raise SpecError(f"document expands to more than {limit:,} YAML nodes "
                                "(alias bomb?)", _mark(node))
            sizes[id(node)] = size
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)


@paused_gc()
def load(text: str, file: str, limit: int = MAX_YAML_NODES) -> Any:
    """Parse one YAML document into located plain data, or raise SpecError."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and "flow" in exc.context and exc.context_mark:
            # the unclosed bracket is where the mistake is, not the end of the file
            m = exc.context_mark
            problem += f" ({exc.context.replace('while parsing a ', '')} opened here)"
        mark = Mark(m.line + 1, m.column + 1) if m else None
        raise SpecError(f"YAML syntax error: {problem}", mark, file) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", None, file) from None
    if node is None:
        raise SpecError("the spec is empty", Mark(1, 1), file)
    try:
        if "&" in text:  # an alias needs an anchor: without one, nothing is shared
            _check_expansion(node, limit)
        return _Builder(limit).build(node)
    except SpecError as err:
        raise err.located(file) from None
