"""Text from a spec or a file name, made safe for each output it is printed in.

Spec names, file names and values quoted from a spec are chosen by whoever wrote the
spec, and they reach terminals, CI logs (where a line starting with ``::`` is a GitHub
workflow command), Markdown tables, CSV files and JUnit XML. Every renderer passes
such text through one of these functions at the point it prints it:

* :func:`text` for plain text (terminal, logs, table cells, CSV, XML): every character
  that is not printable (controls, ESC, bidirectional overrides such as U+202E, line
  separators, lone surrogates from non-UTF-8 file names) becomes a visible escape
  (``\\n``, ``\\x1b``, ``\\u202e``), so nothing can start a new line, move the cursor or
  reorder what a reader sees; a leading ``:`` is escaped too, so no line can begin a
  workflow command. Printable text, the usual case, is returned unchanged.
* :func:`markdown` for Markdown table cells and headings: :func:`text`, with ``|``
  escaped so that a name cannot add columns or rows.
* :func:`github_data` / :func:`github_property` for workflow commands, by the
  toolkit's rules (``%``, CR, LF; and ``:`` ``,`` in properties), other characters
  as :func:`printable` (:func:`text` without the rule for a leading ``:``, which
  cannot start a line there).

:func:`text` also serves JUnit XML: it leaves no character that XML 1.0 forbids, and
ElementTree escapes the markup characters.

* :func:`dot` for a line of a Graphviz label (inside a DOT quoted string): :func:`text`,
  with ``\\`` and ``"`` escaped, so a name cannot end the string nor use Graphviz's
  label escapes (``\\N``, ``\\l``); Graphviz itself escapes ``<`` and ``&`` in the SVG
  it writes.
* :func:`html` for HTML text and attribute values: :func:`text`, then ``& < > " '``
  as entities (a layer named ``<script>`` is text).
* :func:`plot_label` for matplotlib text: :func:`text`, with ``$`` escaped so that a
  name cannot start mathtext (which would render markup, or fail to parse).
* :func:`script_json` for data inside an HTML ``<script>`` element: JSON with every
  non-ASCII character and ``< > &`` as ``\\uXXXX`` escapes, so ``</script>`` or
  ``<!--`` in a name cannot end or change the element.

JSON needs nothing: ``json`` escapes every control and non-ASCII character. Rich
output is printed with markup off, so ``[bold]`` in a name is text, not a style.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def printable(value: object) -> str:
    """``value`` with every non-printable character escaped: one line, nothing hidden."""
    s = str(value)
    if s.isprintable():  # C-fast check: the slow path is for hostile names only
        return s
    return "".join(c if c.isprintable() else _escape(c) for c in s)


def text(value: object) -> str:
    """``value`` as one line of printable text that cannot start a workflow command."""
    s = printable(value)
    if s.lstrip(" ").startswith(":"):
        i = s.index(":")
        s = f"{s[:i]}\\{s[i:]}"
    return s


def markdown(value: object) -> str:
    """``value`` for a Markdown table cell or heading: one line, ``|`` escaped."""
    return text(value).replace("|", "\\|")


def github_data(value: object) -> str:
    """The message of a workflow command (the toolkit's escapeData), printable."""
    s = str(value).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return printable(s)


def github_property(value: object) -> str:
    """A ``file=`` or ``title=`` value of a workflow command (the toolkit's escapeProperty)."""
    return github_data(value).replace(":", "%3A").replace(",", "%2C")


def dot(value: object) -> str:
    """``value`` as one line of a DOT quoted string (without the quotes)."""
    return text(value).replace("\\", "\\\\").replace('"', '\\"')


def html(value: object) -> str:
    """``value`` as HTML text or a quoted attribute value."""
    from html import escape

    return escape(text(value), quote=True)


def script_json(data: object) -> str:
    """``data`` as JSON safe inside an HTML ``<script>`` element."""
    import json

    s = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def plot_label(value: object) -> str:
    """``value`` as matplotlib text: one line, no mathtext."""
    return text(value).replace("$", "\\$")
