#!/usr/bin/env python
"""Regenerate the packaged copies of Cranfield and CACM (``harness/data/<family>/``).

Reads the original files (``cran.all.1400``, ``cran.qry``, ``cranqrel``; ``cacm.tar.gz``,
``topics.cacm.txt``, ``qrels.cacm.txt``) through the task's own readers, so the copy holds
exactly what they produce, and writes ``docs.jsonl.gz``, ``queries.jsonl.gz``, ``qrels.txt`` and
``manifest.json`` (the SHA-256 of the originals and of the packaged contents). The gzip output is
deterministic: running it again on the same originals rewrites the same bytes. The hand-written
``README.md`` of each collection (source and licence) is left alone.

    python scripts/convert_classic_data.py                    # from ../shared/data (or $HARNESS_SHARED_DATA)
    python scripts/convert_classic_data.py --source DIR --out harness/data cranfield
    python scripts/convert_classic_data.py --check             # exit 1 when a packaged copy is stale
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness.errors import HarnessError
from harness.io import sha256_file
from harness.tasks.classic import (
    MANIFEST,
    PACKAGED_DATA,
    PACKAGED_FILES,
    CacmTask,
    CranfieldTask,
    shared_data_candidates,
    write_packaged,
)

TASKS = {"cranfield": CranfieldTask, "cacm": CacmTask}


def originals_folder(family: str, source: str | None) -> Path:
    """The folder of ``family``'s original files: ``source`` or ``source/<family>``, else the shared data."""
    files = TASKS[family].files
    places = [Path(source), Path(source) / family] if source else [r / family for r in shared_data_candidates()]
    for place in places:
        if all((place / name).is_file() for name in files):
            return place
    raise HarnessError(f"{family}: original files {', '.join(files)} not found "
                       f"(looked in {', '.join(map(str, places))}); pass --source DIR")


def convert(family: str, source: str | None, out: Path) -> dict:
    """Convert one collection from its original files into ``out/<family>``; return the manifest."""
    task = TASKS[family]()
    folder = originals_folder(family, source)
    corpus, queries, qrels = task.read_originals(folder)
    originals = {name: sha256_file(folder / name) for name in task.files}
    manifest = write_packaged(out / family, family, originals, corpus, queries, qrels)
    print(f"{family}: {folder} -> {out / family}: {manifest['counts']}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("families", nargs="*", metavar="FAMILY", help=f"of {', '.join(TASKS)} (default: all)")
    parser.add_argument("--source", help="folder of the originals (or of cranfield/ and cacm/); "
                                         "default: $HARNESS_SHARED_DATA or ../shared/data")
    parser.add_argument("--out", default=str(PACKAGED_DATA), help=f"output root (default {PACKAGED_DATA})")
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temporary folder and compare with --out; change nothing")
    args = parser.parse_args(argv)
    families = args.families or list(TASKS)
    unknown = [f for f in families if f not in TASKS]
    if unknown:
        parser.error(f"unknown collection {unknown[0]!r}; choose from {', '.join(TASKS)}")
    try:
        if not args.check:
            for family in families:
                convert(family, args.source, Path(args.out))
            return 0
        stale = []
        with tempfile.TemporaryDirectory() as tmp:
            for family in families:
                convert(family, args.source, Path(tmp))
                for name in (*PACKAGED_FILES, MANIFEST):
                    new, old = Path(tmp) / family / name, Path(args.out) / family / name
                    if not old.is_file() or old.read_bytes() != new.read_bytes():
                        stale.append(str(old))
        print("stale: " + ", ".join(stale) if stale else "packaged copies are up to date")
        return 1 if stale else 0
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
