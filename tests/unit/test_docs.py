"""The documentation stays inside the repository: no file refers to a design document that is
not here, and every relative link of the Markdown files leads to a file (and heading) that
exists."""

from __future__ import annotations

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Spelled in pieces, so that this file does not name what it looks for.
OUTSIDE = ("../" + "shared", "DESIGN" + ".md", "DESIGN" + " §")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def tracked_files() -> list[pathlib.Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    return [ROOT / n.decode() for n in names if n and (ROOT / n.decode()).is_file()]


def anchors(markdown: str) -> set[str]:
    """GitHub's ids of a document's headings."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            found.add(title.replace(" ", "-"))
    return found


def broken_links(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
    """The relative links of `path` to a file outside `root` or missing, or to a heading its
    Markdown file does not have."""
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if (
            not linked.exists()
            or root not in (linked, *linked.parents)
            or (anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()))
        ):
            broken.append(target)
    return broken


def test_no_file_refers_to_a_document_outside_the_repository() -> None:
    mentions = []
    for path in tracked_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        mentions += [f"{path.relative_to(ROOT)}: {o}" for o in OUTSIDE if o in text]
    assert mentions == []


def test_every_relative_link_of_the_documentation_resolves() -> None:
    documents = [p for p in tracked_files() if p.suffix == ".md" and "node_modules" not in p.parts]
    assert ROOT / "docs" / "architecture.md" in documents
    broken = {str(p.relative_to(ROOT)): broken_links(p) for p in documents}
    assert {p: links for p, links in broken.items() if links} == {}


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path: pathlib.Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "api.md").write_text("# The API\n\n## Errors\n")
    (tmp_path / "outside.md").write_text("# Outside\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[a](api.md#errors) [b](api.md#no-such-heading) [c](nowhere.md) [d](https://x.y) "
        "[e](#the-api) [f](../../etc/passwd)"
    )
    assert broken_links(page, tmp_path) == [
        "api.md#no-such-heading",
        "nowhere.md",
        "#the-api",  # page.md has no such heading
        "../../etc/passwd",  # outside the repository
    ]
    (tmp_path / "docs" / "page.md").write_text("# The API\n[e](#the-api) [f](../outside.md)")
    assert broken_links(page, tmp_path) == []
    assert broken_links(page, tmp_path / "docs") == ["../outside.md"]
