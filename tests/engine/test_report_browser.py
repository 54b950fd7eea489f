"""The report in a real browser (headless Chromium): what a reviewer sees and clicks.

Skipped where no Chromium is installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import Chromium, chromium_path
from tests.engine.report_fixtures import many_records, media_tree, write_jsonl
from xmodal.engine.report import build_report
from xmodal.engine.report.truth import from_folder

N = 120  # three pages of 50

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="no chromium on the PATH")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], dict[str, str | None]]:
    root = tmp_path_factory.mktemp("report")
    media = media_tree(root)
    records = many_records(media, N)
    records[7] = {"path": str(root / "data" / "run" / "lost.mp4"), "error": "the decoder crashed (SIGSEGV)"}
    hostile = '<img src=x onerror="window.pwned=1">\'\\.mp4'  # quote and backslash: data.js's string
    records[8] = {**records[8], "path": str(root / "data" / "walk" / hostile)}
    truth = from_folder(root / "data")
    build_report(write_jsonl(root / "p.jsonl", records), root / "out", truth=truth, workers=0)
    return root / "out", records, {r["path"]: truth.label_of(r["path"]) for r in records}


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    chromium = Chromium(chromium_path())
    yield chromium
    chromium.close()


def show(browser: Chromium, report: Path, hash_: str = "") -> None:
    browser.open((report / "index.html").as_uri() + hash_, ready="document.body.dataset.rendered")


def rows(browser: Chromium) -> list[dict]:
    return browser.evaluate("""[...document.querySelectorAll('#files article')].map(a => ({
        path: a.dataset.path, label: a.dataset.label, score: a.dataset.score}))""")


def shown_count(browser: Chromium) -> int:
    return int(browser.evaluate("document.getElementById('shown-count').textContent"))


def rerender(browser: Chromium, action: str) -> None:
    """Run a user action and wait until the list is drawn again."""
    before = int(browser.evaluate("document.body.dataset.rendered"))
    browser.evaluate(action)
    browser.wait_for(f"Number(document.body.dataset.rendered) > {before}")


def scores(records: list[dict]) -> list[float]:
    return [r["score"] for r in records if "error" not in r]


def test_opens_with_every_file_lowest_score_first(browser: Chromium, report) -> None:
    out, records, _ = report
    show(browser, out)
    assert shown_count(browser) == N
    first = rows(browser)
    assert len(first) == 50
    assert first[0]["score"] == ""  # the failed file leads the review order
    assert [float(r["score"]) for r in first[1:]] == sorted(scores(records))[:49]
    assert browser.evaluate("document.querySelector('#files .error').textContent") == \
        "the decoder crashed (SIGSEGV)"
    # The first row's thumbnail strip is a real, decoded image with the times under it.
    browser.wait_for("document.querySelector('#files img') && document.querySelector('#files img').complete")
    assert browser.evaluate("document.querySelector('#files img').naturalHeight") == 96
    video = next(i for i, r in enumerate(first) if r["path"].endswith(".mp4") and r["score"])
    times = browser.evaluate(f"[...document.querySelectorAll('#files article')[{video}]"
                             ".querySelectorAll('.times span')].map(s => s.textContent)")
    sampled = next(r["sampled_s"] for r in records if r["path"] == first[video]["path"])
    assert times == [f"{t:.2f} s" for t in sampled]


def test_pages_and_sort_order(browser: Chromium, report) -> None:
    out, records, _ = report
    show(browser, out)
    rerender(browser, "document.querySelector('.pager button:nth-of-type(3)').click()")  # next ›
    assert [float(r["score"]) for r in rows(browser)] == sorted(scores(records))[49:99]
    assert browser.evaluate("location.hash") == "#page=2"
    rerender(browser, "const s = document.getElementById('sort'); s.value = '-score';"
                      "s.dispatchEvent(new Event('change'))")
    assert [float(r["score"]) for r in rows(browser)] == sorted(scores(records), reverse=True)[:50]


def test_filters_by_label_kind_and_score(browser: Chromium, report) -> None:
    out, records, _ = report
    show(browser, out)
    rerender(browser, "const c = document.getElementById('cls'); c.value = 'walk';"
                      "c.dispatchEvent(new Event('change'))")
    walk = [r for r in records if r.get("label") == "walk"]
    assert shown_count(browser) == len(walk)
    assert {r["label"] for r in rows(browser)} == {"walk"}
    rerender(browser, "const k = document.getElementById('kind'); k.value = 'image';"
                      "k.dispatchEvent(new Event('change'))")
    images = [r for r in walk if r.get("kind") == "image"]
    assert shown_count(browser) == len(images) and sorted(r["path"] for r in rows(browser)) == sorted(
        r["path"] for r in images)
    show(browser, out, "#kind=error")
    assert shown_count(browser) == 1
    show(browser, out, "#max=0.4")
    assert shown_count(browser) == sum(s <= 0.4 for s in scores(records)) + 1  # failed files stay


def test_a_confusion_matrix_cell_links_to_its_files(browser: Chromium, report) -> None:
    out, records, truths = report
    show(browser, out)
    expected = Counter((truths[r["path"]], r["label"]) for r in records
                       if "error" not in r and truths[r["path"]])
    cells = browser.evaluate("""[...document.querySelectorAll('#matrix a')].map(a => [
        a.dataset.true, a.dataset.pred, Number(a.textContent)])""")
    assert {(t, p): n for t, p, n in cells} == dict(expected)
    rerender(browser, "document.querySelector('#matrix a[data-true=\"run\"][data-pred=\"walk\"]').click()")
    want = sorted(r["path"] for r in records if "error" not in r
                  and truths[r["path"]] == "run" and r["label"] == "walk")
    assert shown_count(browser) == len(want) == expected[("run", "walk")]
    assert sorted(r["path"] for r in rows(browser)) == want
    assert browser.evaluate("document.querySelectorAll('#files .truth.wrong').length") == len(want)


def test_names_are_text_never_markup(browser: Chromium, report) -> None:
    out, records, _ = report
    show(browser, out, "#q=onerror")
    assert shown_count(browser) == 1
    assert rows(browser)[0]["path"] == records[8]["path"]
    assert browser.evaluate("window.pwned === undefined && document.querySelectorAll('#files img[src=x]')"
                            ".length === 0")
