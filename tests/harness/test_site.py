"""The static leaderboard page (harness/site.py) and the tidy table it is rendered from.

The page is generated on a small results folder (a few real files copied from results/) and, once,
on the real results/ folder. The browser tests drive Debian's headless chromium through the page's
URL-hash actions (``#tab=…&filter=…&sort=TABLE:COLUMN&open=FILE``) and read the DOM it dumps.
They skip without a chromium binary, and fail instead when HARNESS_REQUIRE_BROWSER=1 (CI).
HARNESS_UPDATE_SCREENSHOT=1 also writes the README's screenshot, results/site/screenshot.png.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest

from harness import leaderboard, site
from harness.cli import main as cli_main
from harness.results import Result

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"
SMALL = (
    "cacm/bm25.json",  # the baseline
    "cacm/dense__minilm.json",
    "cacm/qr__smollm2-135m__file_smollm2-135m__bm2520.json",  # re-rankers: first stage and ceiling
    "cacm/icr__smollm2-135m__full__bm2520.json",
    "clipper/bm25__sample-2-books.json",  # a sample: its own table beside the reported full-data rows
    "clipper/rankgpt__smollm2-135m__q40-seed42.json",
    "reported/clipper/bm25.json",
    "reported/clipper/dense__contriever-msmarco.json",
    "reported/beir/nq/bm25.json",  # a two-task family: its summary matrix
    "reported/beir/nq/qr__Llama-3.1-8B-Instruct__nq__bm25200.json",
    "reported/beir/scifact/bm25.json",
    "reported/beir/scifact/qr__Llama-3.1-8B-Instruct__nq__bm25200.json",
    "niah/bm25.json",
    "niah/rankgpt__smollm2-135m.json",
    "niah/bm25__gen-smollm2-135m-full.json",
    "niah/bm25__gen-smollm2-135m-full.png",  # a heat map, inlined
)
QR = "cacm/qr__smollm2-135m__file_smollm2-135m__bm2520.json"
REQUIRE_BROWSER = os.environ.get("HARNESS_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site") / "results"
    for name in SMALL:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(RESULTS / name, root / name)
        stem = name.removesuffix(".json")
        for sibling in (RESULTS / name).parent.glob(Path(stem).name + ".*.gz"):  # its run files
            shutil.copy(sibling, root / Path(name).parent / sibling.name)
    leaderboard.write(root)
    return root


# -- a small DOM: enough of HTML to find tables, rows and hidden elements -------------------------------
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None = None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        out, stack = [], list(reversed(self.children))
        while stack:
            node = stack.pop()
            if isinstance(node, str):
                continue
            if (tag is None or node.tag == tag) and all(node.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                out.append(node)
            stack += reversed(node.children)
        return out

    def by_id(self, ident: str) -> Node:
        (node,) = self.all(id=ident)
        return node

    @property
    def hidden(self) -> bool:
        return "hidden" in self.attrs


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", {})

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data: str) -> None:
        self.cur.children.append(data)


def dom(text: str) -> Node:
    tree = _Tree()
    tree.feed(text)
    return tree.root


def rows(table: Node) -> list[Node]:
    (tbody,) = table.all("tbody")
    return tbody.all("tr")


def expected_tables(table) -> dict[str, tuple[str, int]]:
    """From the tidy table: table id -> (family tab, number of rows)."""
    out = {}
    for family, tasks in leaderboard.families(table).items():
        part = table[table["task"].isin(tasks)]
        full = leaderboard.full_tasks(table, tasks)  # the summary's columns: tasks on their full data
        summary = part[part["task"].isin(full)]
        for kind in ("measured", "reported"):
            labels = summary.loc[(summary["kind"] == kind) & summary["ranked_by"], "label"].nunique()
            if len(full) > 1 and labels:
                out[f"t-{family}-summary-{kind}"] = (family, labels)
            for task in tasks:
                files = part.loc[(part["task"] == task) & (part["kind"] == kind), "file"].nunique()
                if files:
                    out[f"t-{site._id(task)}-{kind}"] = (family, files)
                if kind == "measured" and files >= 2:  # every pair of measured rows, tested once
                    out[f"t-{site._id(task)}-pairs"] = (family, files * (files - 1) // 2)
    return out


def check_tables(page: Node, table) -> None:
    expected = expected_tables(table)
    found = {t.attrs["id"]: t for t in page.all("table") if "data" in (t.attrs.get("class") or "").split()}
    assert set(found) == set(expected)
    for ident, (family, n) in expected.items():
        assert len(rows(found[ident])) == n, ident
        panel = page.by_id(f"panel-{family}")
        assert found[ident] in panel.all("table"), ident


# -- without a browser ------------------------------------------------------------------------------------
def test_tidy_table_has_one_row_per_file_and_metric(small: Path) -> None:
    table = leaderboard.tidy(small)
    required = {"family", "task", "kind", "label", "retriever", "model", "heads", "first_stage", "first_stage_depth",
                "ceiling", "truncate_words", "n_queries", "metric", "value", "main_metric", "significance", "file",
                "source", "date"}
    assert required <= set(table.columns)
    assert not table.duplicated(["file", "metric"]).any()
    files = sorted(n for n in SMALL if n.endswith(".json"))
    assert sorted(table["file"].unique()) == files
    for name in files:
        result = Result.from_json(small / name)
        part = table[table["file"] == name].set_index("metric")
        assert part["value"].to_dict() == result.metrics
        assert set(part["kind"]) == {result.kind}
    assert table.groupby("task")["main_metric"].apply(lambda s: table.loc[s.index[s], "metric"].nunique()).eq(1).all()
    qr = table[(table["file"] == QR) & table["main_metric"]].iloc[0]
    fs = Result.from_json(small / QR).first_stage
    assert (qr["first_stage"], qr["first_stage_depth"], qr["ceiling"]) == (fs.name, fs.depth, next(iter(fs.recall.values())))
    assert set(table.loc[table["file"] == "cacm/bm25.json", "significance"]) == {"(baseline)"}


def test_checked_in_leaderboard_is_the_tidy_table_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """results/LEADERBOARD.md and leaderboard.csv are exactly what the tidy table renders."""
    monkeypatch.chdir(REPO)
    markdown, csv_text, _ = leaderboard.build("results")
    assert markdown == (RESULTS / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert csv_text == (RESULTS / "leaderboard.csv").read_text(encoding="utf-8")


def test_page_is_deterministic_and_self_contained(small: Path) -> None:
    path = small / "site" / "index.html"
    first = path.read_bytes()
    leaderboard.write(small)
    assert path.read_bytes() == first
    text = first.decode("utf-8")
    for needle in ("http://", "https://", "<link", "@import", "url("):
        assert needle not in text, needle
    page = dom(text)
    assert all(img.attrs["src"].startswith("data:image/png;base64,") for img in page.all("img"))
    assert len(page.all("img")) == 1 and page.all("script")
    assert all("src" not in s.attrs for s in page.all("script"))
    hrefs = [a.attrs["href"] for a in page.all("a")]
    assert hrefs and all(h == "#" or (path.parent / h).is_file() for h in hrefs)
    assert f"../{QR}" in hrefs


def test_page_tables_and_per_query_values_come_from_the_tidy_table(small: Path) -> None:
    table = leaderboard.tidy(small)
    page = dom((small / "site" / "index.html").read_text(encoding="utf-8"))
    check_tables(page, table)
    assert [b.attrs["data-tab"] for b in page.all("button", role="tab")] == ["beir", "cacm", "clipper", "niah"]
    blob = json.loads(page.by_id("per-query").text())
    measured = sorted(table.loc[table["kind"] == "measured", "file"].unique())
    assert sorted(blob) == measured
    values = Result.from_json(small / QR).per_query
    assert blob[QR] == {q: v["nDCG@10"] for q, v in values.items()}
    legend = page.all("p", **{"class": "legend"})[0].text()
    assert "▲" in legend and "▼" in legend and "(baseline)" in legend and "Ceiling" in legend


def test_pairs_table_tests_every_pair_once_with_holm_over_the_table(small: Path) -> None:
    from harness.stats import compare

    table = leaderboard.tidy(small)
    page = dom((small / "site" / "index.html").read_text(encoding="utf-8"))
    part, values = leaderboard.by_file(table[table["task"] == "cacm"])
    files = [f.file for f in leaderboard.measured_order(part[part["kind"] == "measured"], values, "nDCG@10")]
    per_query = {f: {q: v["nDCG@10"] for q, v in Result.from_json(small / f).per_query.items()} for f in files}
    expected = compare(per_query, "nDCG@10")
    found = rows(page.by_id("t-cacm-pairs"))
    assert len(found) == len(expected) == len(files) * (len(files) - 1) // 2
    p_holm = [float(r.all("td")[7].attrs["data-v"]) for r in found]
    assert p_holm == [c.p_holm for c in expected]
    raw = sorted(float(r.all("td")[6].attrs["data-v"]) for r in found)
    from harness.stats import holm

    assert sorted(holm(raw)) == sorted(p_holm)  # Holm over the table's pairs, not per pair
    for r, c in zip(found, expected):
        mark = r.all("td")[8].text()
        assert mark == (("▲" if c.delta > 0 else "▼") if c.p_holm < 0.05 else "")


def test_site_folder_is_not_read_and_output_goes_where_asked(small: Path, tmp_path: Path) -> None:
    root = tmp_path / "results"
    shutil.copytree(small, root)
    shutil.copy(root / "cacm" / "bm25.json", root / "site" / "bm25.json")  # the same cell twice, if it were read
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    out = tmp_path / "out"
    assert cli_main(["leaderboard", "--results", str(root), "--output", str(out)]) == 0
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing new under the results folder
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {
        "LEADERBOARD.md", "leaderboard.csv", "leaderboard.png", "site/index.html"}
    header = (out / "LEADERBOARD.md").read_text(encoding="utf-8").splitlines()[2]
    assert f"from the result files under `{root.as_posix()}/`" in header
    assert "from the result files under `results/`" in (RESULTS / "LEADERBOARD.md").read_text(encoding="utf-8")
    page = (out / "site" / "index.html").read_text(encoding="utf-8")
    assert f'href="{os.path.relpath(root / QR, out / "site")}"' in page


# -- in headless chromium ---------------------------------------------------------------------------------
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory):
    binary = next((shutil.which(c) for c in CHROMIUM_CANDIDATES if shutil.which(c)), None)
    if binary is None:
        message = "no chromium binary (install Debian's chromium: `make browser`, as root)"
        if REQUIRE_BROWSER:
            pytest.fail(f"{message}; HARNESS_REQUIRE_BROWSER=1 makes this a failure")
        pytest.skip(message)
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(page: Path, *args: str, **actions) -> str:
        url = page.resolve().as_uri() + ("#" + urlencode(actions, doseq=True) if actions else "")
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args, url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    def dump(page: Path, **actions) -> Node:
        tree = dom(run(page, "--dump-dom", **actions))
        assert tree.all("html")[0].attrs.get("data-actions") == "done", "the page's script did not run"
        return tree

    run.dump = dump  # type: ignore[attr-defined]
    return run


def test_browser_each_tab_shows_its_tables(small: Path, chromium) -> None:
    table = leaderboard.tidy(small)
    page = small / "site" / "index.html"
    for family in leaderboard.families(table):
        tree = chromium.dump(page, tab=family)
        check_tables(tree, table)
        panels = {p.attrs["data-family"]: p for p in tree.all("section", role="tabpanel")}
        assert [f for f, p in panels.items() if not p.hidden] == [family]
        (tab,) = [b for b in tree.all("button", role="tab") if b.attrs["aria-selected"] == "true"]
        assert tab.attrs["data-tab"] == family
        visible = [t for t in tree.all("table") if "data" in (t.attrs.get("class") or "")
                   and t in panels[family].all("table")]
        assert visible and all(not r.hidden for t in visible for r in rows(t))
        assert bool(panels[family].all("img")) == (family == "niah")


def test_browser_sorting_a_column_reorders_the_rows(small: Path, chromium) -> None:
    page = small / "site" / "index.html"
    before = dom(page.read_text(encoding="utf-8"))
    tree = chromium.dump(page, tab="cacm", sort=["t-cacm-measured:MRR@10", "t-clipper-reported:Retriever",
                                                  "t-clipper-reported:Retriever"])

    def column(t: Node, i: int) -> list[str]:
        return [r.all("td")[i].attrs.get("data-v") or r.all("td")[i].text() for r in rows(t)]

    header = [th.text() for th in before.by_id("t-cacm-measured").all("th")]
    col = header.index("MRR@10")
    original, shown = column(before.by_id("t-cacm-measured"), col), column(tree.by_id("t-cacm-measured"), col)
    assert shown == sorted(original, key=float, reverse=True) and shown != original
    (th,) = [th for th in tree.by_id("t-cacm-measured").all("th") if th.attrs["data-key"] == "MRR@10"]
    assert th.attrs["aria-sort"] == "descending"
    labels = column(tree.by_id("t-clipper-reported"), 0)  # clicked twice: text descending
    assert labels == sorted(column(before.by_id("t-clipper-reported"), 0), key=str.lower, reverse=True)


def test_browser_filter_hides_rows_that_do_not_match(small: Path, chromium) -> None:
    table = leaderboard.tidy(small)
    tree = chromium.dump(small / "site" / "index.html", tab="cacm", filter="smollm2 bm25@20")
    files = table.drop_duplicates("file")
    expected = set(files.loc[files["label"].str.contains("smollm2") & files["first_stage"].eq("bm25"), "file"])
    assert expected == {QR, "cacm/icr__smollm2-135m__full__bm2520.json"}
    shown = [r for t in tree.all("table") if "data" in (t.attrs.get("class") or "") for r in rows(t) if not r.hidden]
    assert {r.attrs["data-file"] for r in shown} == expected
    total = sum(n for _, n in expected_tables(table).values())
    assert tree.by_id("count").text() == f"{len(expected)} of {total} rows match"


def test_browser_measured_row_opens_its_per_query_values(small: Path, chromium) -> None:
    tree = chromium.dump(small / "site" / "index.html", tab="cacm", open=QR)
    panel = tree.by_id("detail")
    assert not panel.hidden
    values = Result.from_json(small / QR).per_query
    baseline = Result.from_json(small / "cacm" / "bm25.json").per_query
    shown = {r.attrs["data-query"]: [c.text() for c in r.all("td")] for r in tree.by_id("d-rows").all("tr")}
    assert set(shown) == set(values)
    for q, cells in shown.items():
        assert cells[1] == f"{100 * values[q]['nDCG@10']:.1f}" and cells[3] == f"{100 * baseline[q]['nDCG@10']:.1f}"
    link = tree.by_id("d-link")
    assert link.attrs["href"] == f"../{QR}" and link.text() == QR
    assert [r for r in rows(tree.by_id("t-cacm-measured")) if "selected" in (r.attrs.get("class") or "")]


def test_browser_real_results_and_screenshot(chromium, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page of the real results/ folder: every tab's tables with the tidy table's row counts;
    and the screenshot (results/site/screenshot.png when HARNESS_UPDATE_SCREENSHOT=1)."""
    monkeypatch.chdir(REPO)  # the page names the folder it read: `results/`
    rows_, notes = leaderboard.collect("results")
    table = leaderboard.table_of(rows_)
    page = site.write(table, leaderboard.per_query_main(rows_, table), "results", tmp_path / "site", notes)
    tree = chromium.dump(page)
    check_tables(tree, table)
    assert len(tree.all("img")) == len(list((RESULTS / "niah").glob("*.png")))
    update = os.environ.get("HARNESS_UPDATE_SCREENSHOT") == "1"
    shot = RESULTS / "site" / "screenshot.png" if update else tmp_path / "screenshot.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    chromium(page, f"--screenshot={shot}", "--window-size=1400,1000", tab="cranfield",
             sort="t-cranfield-measured:nDCG@10",
             open="cranfield/qr__smollm2-135m__file_smollm2-135m__bm2520__excl-cranfield-detection-queries"
                  "__q64-seed42.json")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1400, 1000)
