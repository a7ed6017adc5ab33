"""Class names come from the user's folder names and CSV labels (the same path into the report): in report.html and
report.md they are text, never markup."""

from pathlib import Path

import pytest

from transferlab.config import CompareConfig
from transferlab.experiment import compare

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = ("<img src=x onerror=alert(1)>", "<script>alert(1)</script>", 'a | b $\\frac$ "q" & <b>bold</b>')


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    from conftest import make_image

    root = tmp_path_factory.mktemp("hostile")
    rows = []
    for c, label in enumerate(HOSTILE):
        for i in range(6):
            path = make_image(root / "photos" / f"{c}_{i}.png", seed=10 * c + i)
            rows.append(f'{path.name},"{label.replace(chr(34), chr(34) * 2)}"\n')
    manifest = root / "photos" / "labels.csv"
    manifest.write_text("path,label\n" + "".join(rows))
    config = CompareConfig(
        data=str(manifest), out=str(root / "run"), strategies=["frozen"], epochs={"frozen": 1}, batch_size=4, image_size=48,
        augment="none", runtime="torch",
    )
    return compare(config)


def test_no_markup_from_labels_survives_in_report_html_or_md(hostile_run):
    html = hostile_run.report_file.read_text()
    markdown = hostile_run.report_markdown_file.read_text()
    for text in (html, markdown):
        assert "<script>alert" not in text and "<img src=x" not in text and "<b>bold" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\\|" in markdown  # a pipe in a label does not split a table cell


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
def test_hostile_report_runs_no_script_in_chromium(hostile_run):
    playwright = pytest.importorskip("playwright.sync_api")
    dialogs: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(hostile_run.report_file.resolve().as_uri(), wait_until="load")
        page.wait_for_timeout(300)
        injected = page.evaluate("[document.scripts.length, document.querySelectorAll('img[src=x], b').length]")
        shown = page.inner_text("body")
        browser.close()
    assert dialogs == [] and injected == [0, 0]
    assert "<script>alert(1)</script>" in shown  # shown as text


def test_a_class_too_thin_to_learn_or_judge_is_named_in_the_report_as_text(hostile_run, tmp_path):
    import json
    import shutil

    from transferlab.report.html import build_report

    run = shutil.copytree(hostile_run.path, tmp_path / "run")
    classes = json.loads((run / "classes.json").read_text())
    classes[1].update(train=2, val=0)
    (run / "classes.json").write_text(json.dumps(classes))
    html, markdown = build_report(run)
    assert "Too thin to learn or to judge: <strong>&lt;script&gt;alert(1)&lt;/script&gt;</strong> (only 2 training photo(s) and no validation photo" in html.read_text()
    assert "only 2 training photo(s) and no validation photo" in markdown.read_text()
    assert "Too thin" not in hostile_run.report_file.read_text()
