"""The manual's own links: every relative link in README.md and docs/*.md names a file that
exists, and every #anchor a heading of the page it points to (GitHub's heading ids)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def heading_ids(page: Path) -> set[str]:
    """The ids GitHub gives the page's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated id numbered."""
    ids: set[str] = set()
    for match in re.finditer(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M):
        base = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        slug, n = base, 0
        while slug in ids:
            n += 1
            slug = f"{base}-{n}"
        ids.add(slug)
    return ids


def links(page: Path) -> list[str]:
    """The page's link targets outside fenced blocks, web addresses left out."""
    targets = LINK.findall(FENCE.sub("", page.read_text()))
    return [t for t in targets if "://" not in t and not t.startswith("mailto:")]


def test_the_ids_follow_github() -> None:
    page = ROOT / "README.md"
    ids = heading_ids(page)
    assert {"quick-start", "connect-an-mcp-client", "the-workers-life", "performance"} <= ids


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    found = links(page)
    broken: list[str] = []
    for target in found:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT)}")
        elif anchor and dest.suffix == ".md" and anchor not in heading_ids(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_readme_links_the_performance_notes() -> None:
    assert "docs/performance-notes.md" in links(ROOT / "README.md")
