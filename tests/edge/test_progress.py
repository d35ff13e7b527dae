"""`vigint-edge process` shows its progress: a redrawn bar on a terminal, a line every 10 % otherwise."""

import io

from vigint_edge.cli import ProgressLine


def test_progress_lines_every_ten_percent_when_not_a_terminal():
    out = io.StringIO()
    progress = ProgressLine(out)
    for done in range(1, 796):
        progress("lobby", done, 795)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[0].startswith("lobby: [") and lines[-1].endswith("795/795 frames (100 %)")


def test_no_total_no_output():
    out = io.StringIO()
    ProgressLine(out)("rtsp-cam", 10, None)
    assert out.getvalue() == ""
