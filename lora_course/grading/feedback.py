"""Feedback for students, written by the autograder itself rather than by ``nbgrader generate_feedback``
(which renders the autograded notebook, hidden tests included). It names each check and, for a failed one,
the error message only; any line of a hidden test that still shows up in a message is blanked."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

HIDDEN_BLOCK = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)


def hidden_test_lines(source_notebook: Path) -> list[str]:
    """Every non-trivial line of the hidden test blocks of a solutions notebook."""
    nb = json.loads(Path(source_notebook).read_text())
    lines = []
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for block in HIDDEN_BLOCK.findall(src):
            lines += [line.strip() for line in block.splitlines() if len(line.strip()) >= 12]
    return sorted(set(lines), key=len, reverse=True)


def scrub(message: str, hidden: list[str], limit: int = 400) -> str:
    for line in hidden:
        if line in message:
            message = message.replace(line, "[hidden check]")
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)
    return message if len(message) <= limit else message[:limit] + " ..."


def render(result: dict, assignment: str, hidden: list[str]) -> str:
    e = html.escape
    rows = []
    for t in result.get("tests", []):
        status = "passed" if t["score"] == t["max"] else ("not graded yet" if t.get("manual") else "failed")
        msg = "" if status != "failed" else scrub("; ".join(t.get("errors") or []) or "no error message", hidden)
        rows.append(f"<tr class='{status.replace(' ', '-')}'><td><code>{e(t['name'])}</code></td>"
                    f"<td>{'-' if t.get('manual') else format(t['score'], 'g')} / {t['max']:g}</td><td>{status}</td><td>{e(msg)}</td></tr>")
    notes = "".join(f"<li>{e(n)}</li>" for n in result.get("notes", []))
    if result["status"] != "graded":
        body = f"<p class='error'>Your submission could not be graded: {e(result.get('error', ''))}</p>"
    else:
        body = (f"<p>Score: <b>{result['score']:g} / {result['max_score']:g}</b> (autograded)"
                + (f", plus {result['manual_pending']:g} point(s) of written answers graded by hand" if result.get("manual_pending") else "")
                + "</p><table><tr><th>check</th><th>points</th><th>result</th><th>message</th></tr>" + "".join(rows) + "</table>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(assignment)}: feedback for {e(result['student'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} td,th{{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left}}
tr.failed td{{background:#fde8e8}} tr.passed td{{background:#e8f6e8}} .error{{color:#a00}}</style></head>
<body><h1>{e(assignment)}</h1><p>Student: {e(result['student'])}{(' &middot; file: ' + e(result['file'])) if result.get('file') else ''}</p>
{body}
{'<h2>What the autograder repaired or noticed</h2><ul>' + notes + '</ul>' if notes else ''}
<p><small>Checks that failed are named with their message only; the hidden tests themselves are not shown.</small></p>
</body></html>
"""
