"""Reading README.md: its sections, tables and fenced blocks, for the tests that hold it to the code."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def section(title: str) -> str:
    """The text of the section headed `title` (any level), up to the next heading of that level or above."""
    text = README.read_text()
    match = re.search(rf"^(#+) {re.escape(title)}\n", text, re.M)
    assert match, f"README has no section {title!r}"
    level = len(match.group(1))
    rest = text[match.end() :]
    # The next heading of that level or above, outside fenced blocks (a `# comment` in a
    # shell block or a tokens file is not a heading).
    offset, fenced_block = 0, False
    for line in rest.splitlines(keepends=True):
        if line.startswith("```"):
            fenced_block = not fenced_block
        elif not fenced_block and re.match(rf"#{{1,{level}}} ", line):
            return rest[:offset]
        offset += len(line)
    return rest


def table_rows(text: str) -> list[list[str]]:
    """The rows of the first Markdown table in `text` (header and rule left out), cells stripped."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    assert len(lines) > 2, "no table"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks in `text`, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def code(cell: str) -> str:
    """The text inside the first `backticks` of a table cell."""
    match = re.search(r"`([^`]*)`", cell)
    assert match, f"no code in {cell!r}"
    return match.group(1)
