"""The QRHead/ICR JSON instance format: fixture, gold rules, external qrels, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.registry import make_task
from harness.tasks.icr_json import IcrJsonTask, read_icr_json

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "icr" / "tiny.json"


def test_fixture_instances() -> None:
    data = make_task("icr-json", data=str(FIXTURE)).load()
    assert isinstance(data.instances, list) and data.corpus is None
    first, second = data.instances
    assert first.query.id == "0" and first.query.text == "Who wrote The Metamorphosis?"
    assert [d.id for d in first.candidates] == ["10", "11", "12"]  # file order
    assert [d.title for d in first.candidates] == ["Prague", "Franz Kafka", None]
    assert second.candidates[1].title == ""  # empty title kept, distinct from null
    assert first.gold == {"11": 1}
    # gold = is_supporting ∪ gt_docs; a gt_doc outside the candidates stays (a first-stage miss)
    assert second.gold == {"a": 1, "b": 1, "zz-not-retrieved": 1}
    assert data.qrels == {"0": {"11": 1}, "q1": {"a": 1, "b": 1, "zz-not-retrieved": 1}}
    assert [q.id for q in data.queries] == ["0", "q1"]
    prov = data.provenance
    assert prov["skipped_no_gold"] == 1 and prov["n_queries"] == 2 and prov["n_docs"] == 6
    assert list(prov["sha256"]) == ["tiny.json"]
    assert data.metrics == ("nDCG@10", "R@5", "R@10", "R_all@5", "MRR@10")
    assert data.ignore_identical_ids is False


def test_external_graded_qrels(tmp_path: Path) -> None:
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("0 0 11 2\n0 0 10 0\nq1 0 a 1\n")
    data = IcrJsonTask(data=str(FIXTURE), qrels=str(qrels), ignore_identical_ids=True).load()
    assert data.qrels == {"0": {"11": 2}, "q1": {"a": 1}}
    assert data.ignore_identical_ids is True
    assert set(data.provenance["sha256"]) == {"tiny.json", "qrels.txt"}
    qrels.write_text("0 0 11 2\n")
    with pytest.raises(HarnessError, match=r"qrels\.txt: no judgements for 1 instances, e\.g\. 'q1'"):
        IcrJsonTask(data=str(FIXTURE), qrels=str(qrels)).load()


def test_needs_a_file() -> None:
    with pytest.raises(HarnessError, match=r"needs --data FILE"):
        IcrJsonTask()
    with pytest.raises(HarnessError, match=r"is a folder"):
        IcrJsonTask(data=str(FIXTURE.parent)).load()
    with pytest.raises(HarnessError, match=r"unknown parameter of task 'icr-json' 'qrel'; did you mean 'qrels'"):
        IcrJsonTask(data=str(FIXTURE), qrel="x")


def _write(tmp_path: Path, obj: object) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    return path


def _item(**overrides: object) -> dict:
    item = {
        "idx": 0,
        "question": "q?",
        "gt_docs": [1],
        "paragraphs": [{"idx": 1, "title": None, "paragraph_text": "t", "is_supporting": True}],
    }
    item.update(overrides)
    return item


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"idx": 0}, r"expected a JSON list of instances, got dict"),
        ([], r"empty list, no instances"),
        ([_item(), _item()], r"item 1: duplicate idx '0' \(first at item 0\)"),
        ([{"question": "q", "paragraphs": []}], r"item 0: missing required field 'idx'"),
        ([_item(question="")], r"item 0: field 'question' must be a non-empty string"),
        ([_item(paragraphs=[])], r"item 0: field 'paragraphs' must be a non-empty list"),
        (
            [_item(paragraphs=[{"idx": 1, "title": None}])],
            r"item 0 \(idx 0\) paragraph 0: missing required field 'paragraph_text'",
        ),
        (
            [_item(paragraphs=[{"idx": 1, "paragraph_text": "a"}, {"idx": 1, "paragraph_text": "b"}])],
            r"paragraph 1: duplicate paragraph idx '1'",
        ),
        (
            [_item(paragraphs=[{"idx": 1, "paragraph_text": "a", "title": 3}])],
            r"field 'title' must be a string or null",
        ),
        (
            [_item(paragraphs=[{"idx": 1, "paragraph_text": "a", "is_supporting": "yes"}])],
            r"'is_supporting' must be true or false",
        ),
        (
            [_item(gt_docs=[], paragraphs=[{"idx": 1, "paragraph_text": "a"}])],
            r"no instance has a gold document; empty query set",
        ),
        ([_item(gt_docs=[None])], r"field 'gt_docs' must be a non-empty string or integer"),
    ],
)
def test_bad_input(tmp_path: Path, obj: object, message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        read_icr_json(_write(tmp_path, obj))


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"idx": 0,\n   "question": "q"\n   "paragraphs": []}\n]\n')
    with pytest.raises(HarnessError, match=r"bad\.json:4: malformed JSON"):
        read_icr_json(path)


def test_crlf_file_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "crlf.json"
    path.write_bytes(FIXTURE.read_bytes().replace(b"\n", b"\r\n"))
    a, _ = read_icr_json(FIXTURE)
    b, _ = read_icr_json(path)
    assert a == b
