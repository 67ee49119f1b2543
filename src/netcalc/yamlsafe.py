"""Safe YAML loading that keeps line and column marks, with bounded cost.

The document is read as a stream of parser events (libyaml's when present) and turned
straight into plain data whose mappings and lists remember where each key and value
came from. Building from events rather than from ``yaml.compose``'s node tree lets
every limit apply while the document is read, before its cost is paid: nodes are
counted as they arrive (2,000,000 lines of ``- ReLU`` stop at the limit, not after
composing them all), nesting depth is checked on the way down (the data is later
walked recursively), and an alias adds the size of what it names, so a "billion
laughs" document is refused without expanding it. Aliases share the anchored value:
nothing downstream mutates loaded data.

No tags at all: any explicit tag (``!!binary``, ``!!int '3'``, ``!foo``, even ``!``)
is refused. Plain scalars resolve as YAML 1.1 does in ``yaml.safe_load`` except that
timestamps (``2024-01-01``) and ``=`` stay strings.
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

MAX_YAML_NODES = 500_000
MAX_DEPTH = 100  # nesting of lists and mappings; Python's recursion limit is 1,000
MAX_INT_DIGITS = 30

_STR, _INT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int"
_MERGE = "tag:yaml.org,2002:merge"
_NOT_DATA = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")


class _Loader(_SafeLoader):  # type: ignore[misc,valid-type]
    """The safe loader, resolving each distinct scalar once, timestamps left as strings.

    PyYAML's resolver is Python (regexes per plain scalar) even under libyaml, and a
    large spec repeats few distinct scalars: ``Conv2d``, ``3``, ``true``.
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NOT_DATA]
        for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str):
        super().__init__(stream)
        self._tags: dict[tuple, str] = {}

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        key = (kind, value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = super().resolve(kind, value, implicit)
        return tag


def _mark(event: yaml.Event) -> Mark:
    return Mark(event.start_mark.line + 1, event.start_mark.column + 1)


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


class _Open:
    """A list or mapping being read: its value, its anchor, and the key awaiting a value."""

    __slots__ = ("value", "anchor", "start", "key", "key_mark")

    def __init__(self, value: LMap | LList, anchor: str | None, start: int):
        self.value = value
        self.anchor = anchor
        self.start = start  # the node count when it opened: its size is the difference
        self.key: Any = _NO_KEY
        self.key_mark: Mark | None = None


_NO_KEY = object()
_IN_LIST: Any = Mark(0, 0)  # an _Open's key_mark while it reads a list (never a real mark)
_SCALAR, _END_MAP, _END_SEQ = yaml.ScalarEvent, yaml.MappingEndEvent, yaml.SequenceEndEvent
_IMMUTABLE = (str, int, float, bool)  # plain scalars that can be shared between nodes


class _Reader:
    def __init__(self, loader: _Loader, limit: int, max_depth: int):
        self.loader = loader
        self.limit = limit
        self.max_depth = max_depth
        self.count = 0  # nodes read, aliases counted at their expanded size
        self.anchors: dict[str, tuple[Any, int]] = {}  # name -> (value, size)
        self.constructor = yaml.constructor.SafeConstructor()
        self.plain: dict[tuple, Any] = {}  # (text, implicit) -> value of an untagged scalar

    def document(self) -> Any:
        get = self.loader.get_event
        get()  # StreamStart
        event = get()
        if isinstance(event, yaml.StreamEndEvent):
            return None
        value = self.node(get)
        get()  # DocumentEnd
        event = get()
        if not isinstance(event, yaml.StreamEndEvent):
            raise SpecError("a spec is one YAML document (found a second `---`)", _mark(event))
        return value

    def node(self, get: Any) -> Any:
        """Read one node (the document's root) without recursion.

        The hottest loop of a large spec (one pass per YAML event): the node count and
        the limit live in locals, and a mapping's key/value pairing is inline."""
        stack: list[_Open] = []
        plain = self.plain
        limit = self.limit
        count = self.count
        new_mark = tuple.__new__  # Mark(line, col) without NamedTuple's Python __new__
        while True:
            event = get()
            kind = type(event)
            if kind is _END_MAP or kind is _END_SEQ:
                done = stack.pop()
                value, mark = done.value, done.value.mark
                if done.anchor is not None:
                    self.anchors[done.anchor] = (value, count - done.start)
            else:
                at = event.start_mark
                mark = new_mark(Mark, (at.line + 1, at.column + 1))
                count += 1
                if count > limit:
                    raise SpecError(f"the document has more than {limit:,} YAML nodes", mark)
                if kind is _SCALAR and event.anchor is None and event.tag is None:
                    # the common case: a repeated plain scalar (Conv2d, 3, true) is a lookup
                    key = (event.value, event.implicit)
                    value = plain.get(key, _NO_KEY)
                    if value is _NO_KEY:
                        value = self.scalar(event, mark)
                        if value is None or type(value) in _IMMUTABLE:
                            plain[key] = value
                elif kind is yaml.AliasEvent:
                    self.count = count
                    value = self.alias(event, mark)
                    count = self.count
                elif event.tag is not None:
                    raise SpecError(f"YAML tag {event.tag!r} is not allowed (plain data only)",
                                    mark)
                elif kind is _SCALAR:
                    value = self.scalar(event, mark)
                    self.anchors[event.anchor] = (value, 1)
                else:
                    if len(stack) >= self.max_depth:
                        raise SpecError(f"YAML nested more than {self.max_depth} deep", mark)
                    if kind is yaml.MappingStartEvent:
                        value = LMap()
                        value.key_marks, value.value_marks = {}, {}
                    else:
                        value = LList()
                        value.marks = []
                    value.mark = mark
                    if event.anchor is not None:
                        self.anchors.pop(event.anchor, None)  # an alias inside is recursive
                    opened = _Open(value, event.anchor, count - 1)
                    if kind is not yaml.MappingStartEvent:
                        opened.key_mark = _IN_LIST
                    stack.append(opened)
                    continue
            if not stack:
                self.count = count
                return value
            parent = stack[-1]
            target = parent.value
            if parent.key_mark is _IN_LIST:
                target.append(value)
                target.marks.append(mark)
            elif parent.key is _NO_KEY:  # a mapping's key
                if isinstance(value, (LMap, LList)):
                    raise SpecError("mapping keys must be scalars", mark)
                if value in target:
                    raise SpecError(f"duplicate key {value!r}", mark)
                parent.key, parent.key_mark = value, mark
            else:  # its value
                key = parent.key
                target[key] = value
                target.key_marks[key] = parent.key_mark
                target.value_marks[key] = mark
                parent.key = _NO_KEY

    def alias(self, event: yaml.AliasEvent, mark: Mark) -> Any:
        found = self.anchors.get(event.anchor)
        if found is None:
            raise SpecError(f"YAML syntax error: found undefined alias {event.anchor!r}", mark)
        value, size = found
        self.count += size - 1
        if self.count > self.limit:
            raise SpecError(f"document expands to more than {self.limit:,} YAML nodes "
                            "(alias bomb?)", mark)
        return value

    def scalar(self, event: yaml.ScalarEvent, mark: Mark) -> Any:
        value = event.value
        tag = self.loader.resolve(yaml.ScalarNode, value, event.implicit)
        if tag == _STR:  # fast paths for the common plain scalars
            return value
        if tag == _INT:
            digits = len(value.lstrip("+-").replace("_", ""))
            if digits > MAX_INT_DIGITS:
                raise SpecError(f"an integer of {digits:,} digits (at most {MAX_INT_DIGITS})",
                                mark)
            if value.isascii() and value.isdigit() and value[0] != "0":
                return int(value)  # plain decimal; 0, 010 (YAML 1.1 octal) etc. go the long way
        if tag == _MERGE:
            raise SpecError("YAML merge keys (<<) are not supported", mark)
        node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise SpecError(f"bad YAML value: {exc.problem or exc}", mark) from None
        except ValueError as exc:  # PyYAML's own int/float parsing
            raise SpecError(f"bad YAML value: {exc}", mark) from None


@paused_gc()
def load(text: str, file: str, limit: int = MAX_YAML_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one YAML document into located plain data, or raise SpecError."""
    loader = _Loader(text)
    try:
        value = _Reader(loader, limit, max_depth).document()
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
    except SpecError as err:
        raise err.located(file) from None
    finally:
        loader.dispose()
    if value is None:
        raise SpecError("the spec is empty", Mark(1, 1), file)
    return value
