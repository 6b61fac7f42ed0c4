"""Fixtures for the CLI and runner tests: a small BEIR-format folder and a CLI runner."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli import main

TOPICS = {
    "aero": "wing lift drag airflow supersonic boundary layer pressure",
    "bio": "protein cell gene enzyme membrane receptor mutation",
    "fin": "stock market bond interest rate inflation portfolio",
    "geo": "river mountain glacier erosion sediment tectonic basin",
    "music": "melody chord rhythm orchestra violin harmony tempo",
}


def write_beir(folder: Path, n_docs_per_topic: int = 8, n_queries_per_topic: int = 3, seed: int = 0) -> Path:
    """A BEIR folder whose queries are answerable: each topic's documents share its vocabulary."""
    rng = random.Random(seed)
    filler = ["the", "of", "and", "a", "in", "to", "is", "for", "on", "with", "as", "by", "at", "from"]
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus, queries, qrels = [], [], []
    for topic, vocab in TOPICS.items():
        words = vocab.split()
        for i in range(n_docs_per_topic):
            text = " ".join(rng.choice(words if rng.random() < 0.5 else filler) for _ in range(40))
            corpus.append({"_id": f"{topic}-{i}", "title": f"{topic} study {i}", "text": text})
        for j in range(n_queries_per_topic):
            qid = f"q-{topic}-{j}"
            queries.append({"_id": qid, "text": " ".join(rng.sample(words, 3))})
            for i in rng.sample(range(n_docs_per_topic), 3):
                qrels.append((qid, f"{topic}-{i}", rng.choice([1, 2])))
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in qrels)
    )
    return folder


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "toy")


#: Fields that differ between two runs of the same configuration.
VOLATILE = {"timing", "date", "environment"}


def comparable(result: dict) -> dict:
    """A result without its volatile fields, its run files compared by content (sha256), not by name."""
    runs = {kind: {k: v for k, v in entry.items() if k != "file"} for kind, entry in (result.get("runs") or {}).items()}
    return {**{k: v for k, v in result.items() if k not in VOLATILE}, "runs": runs}


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run the harness CLI in-process and capture its exit code and output."""

    def run(*args: str) -> CliResult:
        code = main(["--no-progress", *args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plug-in package of tests/plugin_pkg, installed by pip into a private folder."""
    target = tmp_path_factory.mktemp("plugin-site")
    package = Path(__file__).resolve().parent.parent / "plugin_pkg"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(package)],
        check=True,
    )
    return target


def harness_subprocess(args: list[str], env_extra: dict[str, str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "--no-progress", *args], env=env, **kwargs)
