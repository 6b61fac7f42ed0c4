"""CLIPPER: chapters as documents, claim pairing by id, the prompt and pairwise accuracy."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.registry import make_task
from harness.tasks.clipper import ClipperTask, parse_source_chapters

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "clipper"


def test_csv_layout_pairs_rows_into_two_queries_over_the_book():
    task = make_task("clipper", data=str(FIXTURES / "csv"))
    assert isinstance(task, ClipperTask)
    data = task.load()
    assert [q.id for q in data.queries] == [
        "tiny_book/multiple/1:true",
        "tiny_book/multiple/1:false",
        "tiny_book/multiple/2:true",
        "tiny_book/multiple/2:false",
    ]
    first = data.instances[0]
    assert [d.id for d in first.candidates] == ["1", "2", "3"]
    assert first.candidates[1].text == "Chapter two. The kite flies over the hill.\n"
    assert first.gold == {"1": 1}
    assert data.qrels["tiny_book/multiple/2:false"] == {"1": 1, "2": 1, "3": 1}
    assert first.meta["context_id"] == data.instances[1].meta["context_id"] == "tiny_book"
    assert first.meta["pair_id"] == "tiny_book/multiple/1" and first.meta["order"] == "natural"
    assert data.instances[1].query.text == "Anna buys a blue kite."
    assert data.metrics == ("R@3", "R@5", "R_all@5", "R_any@5")
    prov = data.provenance
    assert prov["n_pairs"] == 2 and prov["n_dropped_unverified"] == 1 and prov["n_books"] == 1
    assert "books/tiny_book/1.txt" in prov["sha256"]


def test_csv_layout_keeps_invalid_rows_when_asked():
    data = ClipperTask(data=str(FIXTURES / "csv"), verified_only="false").load()
    assert data.provenance["n_pairs"] == 3
    assert data.qrels["tiny_book/multiple/3:true"] == {"2": 1}


def _copy_csv(tmp_path: Path) -> Path:
    root = tmp_path / "clipper"
    shutil.copytree(FIXTURES / "csv", root)
    return root


def test_claim_without_twin_is_an_error_or_skipped_when_allowed(tmp_path, caplog):
    root = _copy_csv(tmp_path)
    path = root / "claims" / "tiny_book" / "claims_multiple_corrupted_final.csv"
    path.write_text(path.read_text().replace("Anna buys a blue kite.", ""))
    with pytest.raises(HarnessError, match=r"row 1 \(claim tiny_book/multiple/1\): has no false twin"):
        ClipperTask(data=str(root)).load()
    with caplog.at_level(logging.WARNING, logger="harness.tasks.clipper"):
        data = ClipperTask(data=str(root), allow_unpaired=True).load()
    assert data.provenance["n_pairs"] == 1 and data.provenance["n_skipped_unpaired"] == 1
    assert "skipping" in caplog.text


def test_source_naming_a_missing_chapter_is_an_error(tmp_path):
    root = _copy_csv(tmp_path)
    (root / "books" / "tiny_book" / "3.txt").unlink()
    with pytest.raises(HarnessError, match=r"row 2 .*source chapter 3 is not in books/tiny_book"):
        ClipperTask(data=str(root)).load()


def test_qrhead_files_pair_by_idx_not_by_position():
    data = ClipperTask(data=str(FIXTURES / "qrhead")).load()
    texts = {q.id: q.text for q in data.queries}
    # The false file lists idx 8 first: pairing by position would swap the twins.
    assert texts == {
        "7:true": "Anna buys a red kite.",
        "7:false": "Anna buys a blue kite.",
        "8:true": "Ben keeps the kite in chapter ten.",
        "8:false": "Anna keeps the kite in chapter ten.",
    }
    inst = data.instances[0]
    assert [d.id for d in inst.candidates] == ["1", "2", "10"]
    assert data.qrels["8:false"] == {"10": 1}
    assert inst.meta["context_id"] == data.instances[3].meta["context_id"]
    assert data.provenance["pairing"] == "by idx"


def test_qrhead_twin_missing_or_over_another_book(tmp_path):
    for name in ("test-00000-of-00002.json", "test-00001-of-00002.json"):
        shutil.copy(FIXTURES / "qrhead" / name, tmp_path / name)
    false_path = tmp_path / "test-00001-of-00002.json"
    entries = json.loads(false_path.read_text())
    false_path.write_text(json.dumps(entries[:1]))  # idx 7's twin is gone
    with pytest.raises(HarnessError, match=r"true claim idx '7' has no false twin"):
        ClipperTask(data=str(tmp_path)).load()
    entries[1]["paragraphs"] = entries[1]["paragraphs"][:2]
    false_path.write_text(json.dumps(entries))
    with pytest.raises(HarnessError, match=r"claim idx '7' is paired with a different book"):
        ClipperTask(data=str(tmp_path)).load()


def test_hf_rows_need_books_and_source(tmp_path):
    rows = [{"id": 5, "book_name": "tiny_book", "true_claim": "A.", "false_claim": "B.", "claim_type": "single"}]
    path = tmp_path / "test.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(HarnessError, match="pass books=PATH"):
        ClipperTask(data=str(path)).load()
    books = str(FIXTURES / "csv" / "books")
    with pytest.raises(HarnessError, match=r"row 0: missing field 'source'"):
        ClipperTask(data=str(path), books=books).load()
    rows[0]["source"] = "Chapter 2, 3"
    path.write_text(json.dumps(rows))
    data = ClipperTask(data=str(path), books=books).load()
    assert [q.id for q in data.queries] == ["5:true", "5:false"]
    assert data.qrels["5:true"] == {"2": 1, "3": 1}


def test_parse_source_chapters():
    assert parse_source_chapters("Chapter 1 (Items 1, 2)") == ["1"]
    assert parse_source_chapters("Chapters 2, 5, 7") == ["2", "5", "7"]
    assert parse_source_chapters("Chapter 9 (Item 4)") == ["9"]
    assert parse_source_chapters("Chapter 1, 17") == ["1", "17"]
    assert parse_source_chapters("no chapter") == []


def test_prompt_sorts_chapters_by_number_and_joins_with_three_newlines():
    task = ClipperTask(data=str(FIXTURES / "qrhead"))
    inst = task.load().instances[0]
    docs = {d.id: d for d in inst.candidates}
    content = task.generation_prompt(inst, [docs["10"], docs["2"]])[0]["content"]
    assert content.startswith(
        "You are provided with a context and a statement. Your task is to carefully read the context and then "
        "determine whether the statement is true or false.  \n\nAnswer TRUE if the statement is true in its entirety"
    )
    assert (
        "<context>Chapter two. The kite flies over the hill.\n\n\nChapter ten. Ben keeps the kite.</context>\n\n\n"
        "<statement>Anna buys a red kite.</statement>\n\n"
        "<question>Based on the context provided, is the above statement TRUE or FALSE?</question>\n\n"
    ) in content
    assert content.endswith("<explanation>YOUR EXPLANATION</explanation>\n<answer>YOUR ANSWER</answer>")


def test_pairwise_accuracy_with_missing_tag_counted_and_failing_the_pair(caplog):
    task = ClipperTask(data=str(FIXTURES / "qrhead"))
    instances = task.load().instances  # 7:true, 7:false, 8:true, 8:false
    outputs = [
        "<explanation>Chapter 1 says so.</explanation>\n<answer> TRUE </answer>",
        "<explanation>It was red.</explanation><answer>False</answer><answer>true</answer>",
        "<explanation>Yes.</explanation>\n<answer>true</answer>",
        "The statement is FALSE.",  # no tag: counted, fails pair 8
    ]
    with caplog.at_level(logging.WARNING, logger="harness.tasks.clipper"):
        scores = task.score_generations(instances, outputs)
    assert scores == {
        "7:true": {"claim_accuracy": 1.0, "missing_answer_tag": 0.0, "pair_accuracy": 1.0, "accuracy": 1.0},
        "7:false": {"claim_accuracy": 1.0, "missing_answer_tag": 0.0},
        "8:true": {"claim_accuracy": 1.0, "missing_answer_tag": 0.0, "pair_accuracy": 0.0, "accuracy": 0.0},
        "8:false": {"claim_accuracy": 0.0, "missing_answer_tag": 1.0},
    }
    assert "1 of 4 outputs have no <answer> tag" in caplog.text


def test_shared_clipper_sample_counts(shared_data):
    root = shared_data / "clipper_sample"
    data = ClipperTask(data=str(root), verified_only=False).load()
    assert data.provenance["pairs_per_file"] == {
        "kafka_metamorphosis/multiple": 11,
        "kafka_metamorphosis/single": 9,
        "wells_time/multiple": 15,
        "wells_time/single": 68,
    }
    assert data.provenance["n_pairs"] == 103 and data.provenance["n_books"] == 2
    by_book = {inst.meta["book"]: inst for inst in data.instances}
    assert [d.id for d in by_book["kafka_metamorphosis"].candidates] == ["1", "2", "3"]
    assert [d.id for d in by_book["wells_time"].candidates] == [str(i) for i in range(1, 18)]
    assert data.qrels["wells_time/multiple/1:true"] == {"2": 1, "5": 1, "7": 1}
    assert data.qrels["kafka_metamorphosis/single/1:false"] == {"1": 1}
    verified = ClipperTask(data=str(root)).load().provenance
    assert verified["pairs_per_file"]["kafka_metamorphosis/multiple"] == 9
    assert verified["pairs_per_file"]["wells_time/multiple"] == 14
    assert verified["n_pairs"] == 100 and verified["n_dropped_unverified"] == 3


def test_max_queries_samples_whole_pairs():
    """``--max-queries 1`` keeps one pair with both its claims, never a lone claim."""
    from harness.runner import select_queries

    task = make_task("clipper", data=str(FIXTURES / "csv"))
    data = task.load()
    for seed in range(6):
        queries, available = select_queries(task, data, 1, seed)
        assert available == 4 and len(queries) == 2
        assert queries[0].meta["pair_id"] == queries[1].meta["pair_id"]
        assert {q.meta["label"] for q in queries} == {"true", "false"}
    assert len(select_queries(task, data, 2, 0)[0]) == 4
