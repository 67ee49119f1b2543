"""The bad-input corpus: every file in tests/bad_specs/ must fail with exit code 2 and
one line ``FILE:LINE:COL: message``, the line and message its header announces.

Header: ``# expect-error: LINE MESSAGE`` (LINE 0: any line, for errors found deep in
an expansion such as an alias bomb).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netcalc.cli import app

CORPUS = sorted((Path(__file__).parent / "bad_specs").glob("*.yaml"))
HEADER = re.compile(r"^# expect-error: (\d+) (.+)$")


def test_corpus_is_not_empty():
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_bad_spec_exits_2_with_located_message(path: Path, runner):
    m = HEADER.match(path.read_text().splitlines()[0])
    assert m, f"{path.name} lacks its '# expect-error: LINE MESSAGE' header"
    line, message = int(m[1]), m[2]
    result = runner.invoke(app, ["shapes", str(path)])
    assert result.exit_code == 2, result.output
    out = result.stderr.strip()
    assert "\n" not in out, f"expected one line, got:\n{out}"
    assert "Traceback" not in out
    loc = re.match(rf"^{re.escape(str(path))}:(\d+):(\d+): (.*)$", out)
    assert loc, out
    if line:
        assert int(loc[1]) == line, out
    assert message in loc[3], out
