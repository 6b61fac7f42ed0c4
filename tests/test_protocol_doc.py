"""Every ``docs/PROTOCOL.md §N.M`` citation in the repository names a section that exists.

The code cites the paper's protocol facts by section number. This test scans the repository's text
files (``git ls-files``: tracked files plus untracked, non-ignored ones, so that a new file is checked
before it is committed) for citations of the form ``PROTOCOL.md §4.1`` (also ``PROTOCOL.md §1.4,
§2``) and asserts that each cited number is a heading of docs/PROTOCOL.md. It also asserts that no
file points at the out-of-repository copy the page was written from: the repository must stand alone.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROTOCOL = REPO / "docs" / "PROTOCOL.md"

SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml"}
NAMES = {"Makefile"}

_NUM = r"\d+(?:\.\d+)*"
# "PROTOCOL.md §4.1", optionally followed by more sections: "§1.4, §2", "§4.2 and §4.3", "§5.1/§5.2".
# A citation may wrap onto the next line of a comment, hence the '#' in the gap.
CITATION = re.compile(rf"PROTOCOL\.md[\s#]*§\s*(?P<first>{_NUM})(?P<rest>(?:\s*(?:,|;|/|and|or|&)\s*§\s*{_NUM})*)")
SECTION = re.compile(rf"§\s*({_NUM})")
# "## 4. Task protocols", "### 4.1 BEIR re-ranking (Table 2)"
HEADING = re.compile(rf"^#{{1,6}}\s+({_NUM})\.?(?:\s|$)", re.MULTILINE)

# Built from pieces so that this file does not match its own check.
FORBIDDEN = ("/work/" + "shared", "../shared/" + "PROTOCOL.md")


def cited_sections(text: str) -> list[tuple[int, str]]:
    """(line number, section number) of every PROTOCOL.md citation in ``text``."""
    found = []
    for match in CITATION.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, match.group("first")))
        found.extend((line, number) for number in SECTION.findall(match.group("rest")))
    return found


def heading_numbers(markdown: str) -> list[str]:
    """The section numbers of the numbered headings of a Markdown page, in order."""
    return [number.rstrip(".") for number in HEADING.findall(markdown)]


def unresolved(files: dict[str, str], headings: set[str]) -> list[str]:
    """``path:line: §N`` for every citation in ``files`` (path -> text) that is not in ``headings``."""
    return [
        f"{path}:{line}: §{number}"
        for path, text in sorted(files.items())
        for line, number in cited_sections(text)
        if number not in headings
    ]


def _repo_text_files() -> dict[str, str]:
    try:
        listing = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as exc:  # no git, or not a checkout
        pytest.skip(f"git ls-files unavailable: {exc}")
    files = {}
    for rel in sorted(set(filter(None, listing.split("\0")))):
        path = REPO / rel
        if rel.startswith("results/") and rel.endswith(".json"):
            continue
        if path.suffix not in SUFFIXES and path.name not in NAMES:
            continue
        if not path.is_file():  # listed in the index but deleted in the working tree
            continue
        files[rel] = path.read_text(encoding="utf-8", errors="replace")
    return files


@pytest.fixture(scope="module")
def repo_files() -> dict[str, str]:
    return _repo_text_files()


@pytest.fixture(scope="module")
def protocol_headings() -> list[str]:
    assert PROTOCOL.is_file(), "docs/PROTOCOL.md is missing"
    return heading_numbers(PROTOCOL.read_text(encoding="utf-8"))


def test_every_citation_resolves(repo_files, protocol_headings):
    citations = [c for text in repo_files.values() for c in cited_sections(text)]
    assert citations, "no PROTOCOL.md citations found: the scan or the pattern is broken"
    missing = unresolved(repo_files, set(protocol_headings))
    assert not missing, "citations of sections that docs/PROTOCOL.md lacks:\n" + "\n".join(missing)


def test_headings_are_numbered_once(protocol_headings):
    duplicates = sorted({n for n in protocol_headings if protocol_headings.count(n) > 1})
    assert not duplicates, f"section numbers used by more than one heading: {duplicates}"
    for top in ("1", "2", "3", "4", "5", "6", "7", "8"):
        assert top in protocol_headings, f"docs/PROTOCOL.md lacks section {top}"


def test_no_reference_to_the_outside_copy(repo_files):
    offending = [
        f"{path}:{text.count(chr(10), 0, text.index(needle)) + 1}: {needle}"
        for path, text in sorted(repo_files.items())
        for needle in FORBIDDEN
        if needle in text
    ]
    assert not offending, "the repository must not depend on files outside it:\n" + "\n".join(offending)


NAME = "PROTOCOL.md"  # kept apart so the examples below are not citations of this file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"see docs/{NAME} §4.1.", ["4.1"]),
        (f"(docs/{NAME} §1.4, §2)", ["1.4", "2"]),
        (f"docs/{NAME} §4.2 and §4.3; unrelated §7", ["4.2", "4.3"]),
        (f"# wraps: docs/{NAME}\n# §5.2 here", ["5.2"]),
        (f"docs/{NAME} §3: 21 of 32 layers", ["3"]),
        ("docs/ARCHITECTURE.md §4.1", []),
    ],
)
def test_citation_pattern(text, expected):
    assert [number for _, number in cited_sections(text)] == expected


def test_heading_pattern():
    page = "# Title\n\n## 4. Task protocols\n### 4.1 BEIR re-ranking (Table 2)\n#### 4.1.2 Deeper\n## Notes\n"
    assert heading_numbers(page) == ["4", "4.1", "4.1.2"]


def test_check_can_fail():
    headings = set(heading_numbers("## 4. Task protocols\n### 4.1 BEIR\n"))
    files = {"a.py": f'"""docs/{NAME} §4.1, §9.9"""\n', "b.md": f"x\ndocs/{NAME} §4\n"}
    assert unresolved(files, headings) == ["a.py:1: §9.9"]
