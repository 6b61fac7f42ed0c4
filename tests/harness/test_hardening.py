"""Bad input and tampering, one class per test: each ends in a one-line error (exit 2), a
recomputation, or a refusal; never a traceback, a path outside its root or a silent wrong number."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.results import Result, default_output_path

from .conftest import write_beir


def _one_line_error(result, *fragments: str) -> None:
    assert result.code == 2, (result.out, result.err)
    lines = [line for line in result.err.strip().splitlines() if not line.startswith(("WARNING", "INFO"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# -- paths built from data stay inside their root ------------------------------------------------
@pytest.mark.parametrize("task_id", ["beir/../../../X", "../x", "beir/..", "/etc/passwd", "beir/./.."])
def test_result_paths_never_leave_the_results_root(tmp_path: Path, task_id: str) -> None:
    result = Result.from_dict({"schema_version": 2, "kind": "reported", "source": "s", "task": {"id": task_id},
                               "retriever": {"name": "../../bm25", "model": "../../m"}, "metrics": {}})
    root = tmp_path / "results"
    path = default_output_path(result, root)
    assert path.resolve().is_relative_to(root.resolve()), path


def test_a_traversing_task_id_on_the_command_line_writes_inside_the_root(cli, tmp_path: Path) -> None:
    data = write_beir(tmp_path / "toy")
    root = tmp_path / "deep" / "results"
    res = cli("run", "--task", "beir/../../../X", "--data", str(data), "--retriever", "bm25",
              "--results-root", str(root))
    written = [p for p in tmp_path.rglob("*.json") if "toy" not in p.parts]
    assert res.code in (0, 2)
    assert all(p.resolve().is_relative_to(root.resolve()) for p in written), written


# -- input files: strict, line-numbered -------------------------------------------------------------
@pytest.mark.parametrize("first_line", ["q-aero-0\taero-0\thigh", "q-aero-0\taero-0\t1.5", "q-aero-0\taero-0\t1e308"])
def test_a_bad_first_qrels_line_is_an_error_not_a_header(cli, tmp_path: Path, first_line: str) -> None:
    data = write_beir(tmp_path / "toy")
    qrels = data / "qrels" / "test.tsv"
    body = qrels.read_text().split("\n", 1)[1]
    qrels.write_text(first_line + "\n" + body)
    _one_line_error(cli("run", "--task", str(data), "--retriever", "bm25", "--output", str(tmp_path / "o.json")),
                    "test.tsv:1", "relevance grade")


def test_a_named_header_is_skipped(tmp_path: Path) -> None:
    from harness.tasks.beir import read_beir_qrels

    path = tmp_path / "q.tsv"
    path.write_text("query_id\tdoc_id\trelevance\nq1\td1\t2\n")
    assert read_beir_qrels(path) == {"q1": {"d1": 2}}
    path.write_text("q1\td1\t2\n")  # no header at all
    assert read_beir_qrels(path) == {"q1": {"d1": 2}}


def test_undecodable_bytes_name_file_line_and_offset(cli, tmp_path: Path) -> None:
    data = write_beir(tmp_path / "toy")
    corpus = data / "corpus.jsonl"
    raw = corpus.read_bytes().split(b"\n")
    raw[2] = raw[2].replace(b'"text": "', b'"text": "caf\xe9 ', 1)
    corpus.write_bytes(b"\n".join(raw))
    _one_line_error(cli("run", "--task", str(data), "--retriever", "bm25", "--output", str(tmp_path / "o.json")),
                    "corpus.jsonl:3", "not valid UTF-8", "0xe9")


def test_json_nested_too_deeply_is_a_one_line_error(tmp_path: Path) -> None:
    from harness.io import read_json

    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(HarnessError, match="nested too deeply"):
        read_json(path)


def test_a_corpus_of_empty_documents_is_a_one_line_error(cli, tmp_path: Path) -> None:
    data = tmp_path / "empty"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text('{"_id": "d1", "text": ""}\n{"_id": "d2", "text": "the of"}\n')
    (data / "queries.jsonl").write_text('{"_id": "q1", "text": "lift"}\n')
    (data / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    _one_line_error(cli("run", "--task", str(data), "--retriever", "bm25", "--output", str(tmp_path / "o.json")),
                    "indexable word")


# -- misleading messages --------------------------------------------------------------------------
def test_an_unknown_first_stage_is_named(cli, beir_dir: Path, tmp_path: Path) -> None:
    _one_line_error(cli("run", "--task", str(beir_dir), "--retriever", "dense", "--first-stage", "nope",
                        "--output", str(tmp_path / "o.json")), "unknown retriever 'nope'")


def test_a_first_stage_that_cannot_search_is_refused(cli, beir_dir: Path, tmp_path: Path) -> None:
    _one_line_error(cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--first-stage", "rankgpt",
                        "--output", str(tmp_path / "o.json")), "cannot search a whole corpus")


def test_a_zero_shard_count_says_so(cli, beir_dir: Path) -> None:
    _one_line_error(cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--shard", "0/0"),
                    "shard count must be at least 1")


def test_a_misspelt_task_parameter_suggests_the_right_one(cli, beir_dir: Path) -> None:
    _one_line_error(cli("run", "--task", "niah", "--retriever", "bm25", "--task-set", "lenghts=[1000]"),
                    "did you mean 'lengths'")


# -- folders that cannot be written ---------------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("chattr") is None, reason="root ignores permission bits")
def test_a_read_only_results_root_fails_before_any_work(cli, beir_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("this user can write a read-only folder (root)")
        _one_line_error(cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--results-root", str(root)),
                        "not writable")
    finally:
        root.chmod(0o700)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's read-only /proc (any user, root too)")
def test_a_results_root_on_a_read_only_file_system_fails_before_any_work(cli, beir_dir: Path) -> None:
    _one_line_error(cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--results-root", "/proc/self/results"),
                    "/proc/self/results", "cannot create folder")


def test_files_are_written_with_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    """Atomic writes go through a 0600 temporary file; the result must not keep that mode."""
    from harness.io import NEW_FILE_MODE, atomic_write_bytes

    umask = os.umask(0o022)
    os.umask(umask)
    new = tmp_path / "new.run.gz"
    atomic_write_bytes(new, b"x")
    assert new.stat().st_mode & 0o777 == 0o666 & ~umask == NEW_FILE_MODE
    kept = tmp_path / "kept.json"
    kept.write_bytes(b"old")
    kept.chmod(0o640)
    atomic_write_bytes(kept, b"new")
    assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_bytes() == b"new"


def test_an_unwritable_cache_turns_caching_off_with_a_warning(cli, beir_dir: Path, tmp_path: Path, monkeypatch,
                                                             caplog) -> None:
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HARNESS_CACHE", str(blocker / "sub"))
    res = cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--output", str(tmp_path / "o.json"))
    assert res.code == 0, res.err
    assert "caching is off" in caplog.text
    assert Result.from_json(tmp_path / "o.json").metrics["nDCG@10"] > 0


# -- caches and resume files are checked, never trusted ------------------------------------------
def test_an_edited_first_stage_cache_entry_is_recomputed(cli, beir_dir: Path, tmp_path: Path, caplog) -> None:
    args = ("run", "--task", str(beir_dir), "--retriever", "dense", "--first-stage", "bm25", "--depth", "10")
    assert cli(*args, "--output", str(tmp_path / "a.json")).code == 0
    entries = sorted(Path(os.environ["HARNESS_CACHE"]).glob("first_stage/*.json"))
    assert entries
    for entry in entries:  # reverse every cached ranking, leaving the checksums as they were
        stored = json.loads(entry.read_text())
        stored["run"] = [[qid, list(reversed(ranking))] for qid, ranking in stored["run"]]
        entry.write_text(json.dumps(stored))
    assert cli(*args, "--output", str(tmp_path / "b.json")).code == 0
    assert "checksum mismatch" in caplog.text
    a, b = Result.from_json(tmp_path / "a.json"), Result.from_json(tmp_path / "b.json")
    assert a.metrics == b.metrics and a.first_stage.recall == b.first_stage.recall


@pytest.mark.parametrize("line", [
    '{"qid": "q1", "scores": [1, 2], "stats": {}}',
    '{"qid": "q1"}',
    '[1, 2, 3]',
    '{"qid": "q1", "scores": {"d1": 99.0}, "stats": {}, "sha256": "0"}',
    '{"qid": 5, "scores": {}, "stats": {}}',
])
def test_resume_lines_of_the_wrong_shape_or_checksum_are_discarded(tmp_path: Path, line: str, caplog) -> None:
    from harness.resume import ResumeFile

    path = tmp_path / "r.jsonl"
    good = ResumeFile(path)
    good.append("q2", {"d1": 1.0}, None)
    good.close()
    path.write_text(line + "\n" + path.read_text())
    resumed = ResumeFile(path)
    assert set(resumed.done) == {"q2"}
    assert "scored again" in caplog.text


def test_a_shard_without_its_run_is_refused(tmp_path: Path, beir_dir: Path) -> None:
    from harness.runner import RunConfig, execute
    from harness.shards import merge

    _, path = execute(RunConfig(task=str(beir_dir), retriever="bm25", output=str(tmp_path / "p.json"), shard=(0, 2),
                                show_progress=False))
    obj = json.loads(path.read_text())
    del obj["run"]
    path.write_text(json.dumps(obj))
    with pytest.raises(HarnessError, match="carries no 'run'"):
        merge([path])


# -- failures that look like success -----------------------------------------------------------
def test_an_unreachable_generator_fails_the_run_unless_failures_are_allowed(cli, tmp_path: Path) -> None:
    args = ("run", "--task", "niah", "--task-set", "lengths=[300]", "--task-set", "depths=[0.5]",
            "--retriever", "bm25", "--generate", "--generator", "openai:http://127.0.0.1:9/v1#m",
            "--generator-set", "timeout=2", "--generator-set", "retries=0", "--top-k", "1")
    res = cli(*args, "--output", str(tmp_path / "a.json"))
    _one_line_error(res, "generations", "failed", "--allow-failures")
    assert not (tmp_path / "a.json").exists()
    res = cli(*args, "--allow-failures", "--output", str(tmp_path / "b.json"))
    assert res.code == 0, res.err
    result = Result.from_json(tmp_path / "b.json")
    assert result.generation["generation_failures"] == result.generation["n_prompts"] > 0
    assert result.generation["allow_failures"] is True


def test_an_internal_error_is_one_line_with_a_debug_switch(cli, monkeypatch) -> None:
    import harness.commands.list as listing

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(listing, "main", boom)
    from harness.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["list"])
    assert args.func is boom
    res = cli("list")
    assert res.code == 1 and "internal error: ZeroDivisionError" in res.err and "--debug" in res.err
    assert "Traceback" not in res.err
    with pytest.raises(ZeroDivisionError):
        cli("--debug", "list")


# -- numbers that can be checked are checked -----------------------------------------------------
def _measured(beir_dir: Path, tmp_path: Path) -> dict:
    from harness.runner import RunConfig, execute

    result, _ = execute(RunConfig(task=str(beir_dir), retriever="bm25", output=str(tmp_path / "m.json"),
                                  show_progress=False))
    return result.to_dict()


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: next(iter(r["per_query"].values())).__setitem__("nDCG@10", 7.5), "outside [0, 1]"),
    (lambda r: r.__setitem__("metrics", {}), "'metrics' is empty"),
    (lambda r: r["task"].__setitem__("n_available", 3), "only 3 queries were available"),
    (lambda r: r.__setitem__("kind", "reported"), "missing field 'source'"),
    (lambda r: r.__setitem__("schema_version", True), "must be an integer"),
    (lambda r: r.__setitem__("kind", "guess"), "field 'kind' must be"),
])
def test_checkable_numbers_are_checked(beir_dir: Path, tmp_path: Path, mutate, message: str) -> None:
    obj = _measured(beir_dir, tmp_path)
    mutate(obj)
    with pytest.raises(HarnessError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Result.from_dict(obj, "x.json").validate("x.json")


def test_validate_checks_every_file_and_fails_at_the_end(cli, beir_dir: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    Result.from_dict(_measured(beir_dir, tmp_path)).write(good)
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a result"}')
    res = cli("validate", str(bad), str(good))
    assert res.code == 2 and f"{good}: ok" in res.out and "not a result file" in res.err and "1 of 2" in res.err


def test_validate_a_folder_checks_every_result_file_under_it(cli, beir_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "results"
    good = root / "toy" / "m.json"
    good.parent.mkdir(parents=True)
    _measured(beir_dir, good.parent)  # toy/m.json with its run files
    (root / "toy" / "bad.json").write_text('{"not": "a result"}')
    (root / "site").mkdir()
    (root / "site" / "page.json").write_text("[]")  # not a result folder: never read
    (root / "heads").mkdir()
    (root / "heads" / "h.json").write_text("{}")
    res = cli("validate", str(root))
    assert res.code == 2 and f"{good}: ok" in res.out and "1 of 2 files failed" in res.err
    assert "page.json" not in res.out + res.err and "h.json" not in res.out + res.err


def test_two_files_of_one_cell_with_the_same_date_are_an_error(beir_dir: Path, tmp_path: Path) -> None:
    from harness import leaderboard

    root = tmp_path / "results"
    obj = _measured(beir_dir, root)  # root/m.json and its run files
    Result.from_dict(obj).write(root / "copy.json")  # the same cell, the same date, the same run files
    with pytest.raises(HarnessError, match="same cell with the same date"):
        leaderboard.collect(root)


def test_generation_cache_rows_are_sealed_and_a_foreign_file_is_moved_aside(tmp_path: Path, caplog) -> None:
    import sqlite3

    from harness.generation.cache import GenerationCache

    path = tmp_path / "gen.sqlite"
    cache = GenerationCache(path)
    cache.put("k1", "Paris", "stop")
    assert cache.get("k1") == ("Paris", "stop")
    with cache._conn:
        cache._conn.execute("UPDATE generations SET text = 'Rome' WHERE key = 'k1'")
    assert cache.get("k1") is None and "fails its checksum" in caplog.text
    cache.close()
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE generations (key TEXT PRIMARY KEY, text TEXT)")
    GenerationCache(other).put("k", "x")
    assert list(tmp_path.glob("other.sqlite.unusable-*")) and "not a generation cache" in caplog.text
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    assert GenerationCache(garbage).get("k") is None


def test_remote_code_is_never_trusted_silently() -> None:
    from harness.retrievers.dense import DenseRetriever

    with pytest.raises(HarnessError, match="trust_remote_code=true"):
        DenseRetriever(model="dunzhang/stella_en_400M_v5")


def test_a_result_from_uncommitted_code_needs_allow_dirty(cli, beir_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from harness import provenance

    monkeypatch.delenv("HARNESS_ALLOW_DIRTY")
    monkeypatch.setattr(provenance, "git_commit", lambda: "0123abc+dirty")
    _one_line_error(cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--output", str(tmp_path / "a.json")),
                    "uncommitted changes", "--allow-dirty")
    res = cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--allow-dirty", "--output", str(tmp_path / "b.json"))
    assert res.code == 0, res.err
    env = Result.from_json(tmp_path / "b.json").environment
    assert env["allow_dirty"] is True
    assert env["command"].startswith("harness --no-progress run --task ") and "--allow-dirty" in env["command"]


def test_the_checkout_is_read_once_and_results_do_not_make_it_dirty(tmp_path: Path, monkeypatch) -> None:
    """A result written into ``results/`` is output, not code; and a run records the reading it
    took before scoring, so an edit during the run cannot flip it."""
    import subprocess

    from harness import provenance

    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    (repo / "harness.py").write_text("x = 1\n")
    (repo / "results" / "a.json").write_text("{}\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    monkeypatch.setattr(provenance, "REPO_ROOT", repo)
    assert not provenance.git_commit().endswith("+dirty")
    (repo / "results" / "a.json").write_text('{"changed": true}\n')
    assert not provenance.git_commit().endswith("+dirty")
    (repo / "harness.py").write_text("x = 2\n")
    assert provenance.git_commit().endswith("+dirty")

    calls = []
    monkeypatch.setattr(provenance, "git_commit", lambda: calls.append(1) or "0123abc")
    from harness.runner import RunConfig, execute

    execute(RunConfig(task="cranfield", retriever="bm25", max_queries=3, show_progress=False), write=False)
    assert calls == [1]


def test_scores_from_the_resume_cache_name_the_code_that_computed_them(beir_dir: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    from harness import resume
    from harness.runner import RunConfig, execute

    config = {"task": str(beir_dir), "retriever": "bm25", "first_stage": "bm25", "depth": 5, "show_progress": False}
    monkeypatch.setattr(resume, "_commit", lambda: "old-commit")
    execute(RunConfig(**config, output=str(tmp_path / "a.json")))
    monkeypatch.setattr(resume, "_commit", lambda: "new-commit")
    second, _ = execute(RunConfig(**config, output=str(tmp_path / "b.json")))  # every query from the cache
    assert second.environment["scored_by"] == ["old-commit"]

