"""Errors that carry their place in the spec: ``FILE:LINE:COL: message``.

Every problem with user input (YAML syntax, unknown layers, bad arguments, shape
errors, bad CLI values) is a :class:`SpecError`. The CLI prints ``str(err)`` as one
line and exits with code 2; it never shows a traceback for these.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple


class Mark(NamedTuple):  # a NamedTuple: specs make one per YAML node, so creation must be cheap
    """A 1-based line and column in a spec file."""

    line: int
    col: int


MAX_MESSAGE = 500  # characters: a message quotes the offending token, never a whole file


class SpecError(Exception):
    """Invalid input, located in a file when the place is known."""

    def __init__(self, message: str, mark: Mark | None = None, file: str | None = None):
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "…"
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.file = file

    def located(self, file: str) -> "SpecError":
        """Attach the file name if it is not set yet (errors are raised deep inside)."""
        if self.file is None:
            self.file = file
        return self

    def __str__(self) -> str:
        place = self.file or "<spec>"
        if self.mark is not None:
            place = f"{place}:{self.mark.line}:{self.mark.col}"
        return f"{place}: {self.message}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint like ' (did you mean Conv2d?)', or '' when nothing is close."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        return f" (did you mean {lowered[word.lower()]}?)"
    import difflib  # only on the error path: keeps it off the start-up time

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
