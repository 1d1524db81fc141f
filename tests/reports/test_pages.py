"""report.html and compare.html on the shared trained runs (GAP and CA EfficientNet-Lite0 at 96 px, built-in data):
written by objrecon_imagenet.py and by ``python -m utils.reports.compare``, read without JavaScript (the HTML
itself), then opened in a real headless Chromium (tests/browser.py): no console error, every image decoded, one
table row per method, sorting and filtering the gallery, a click drawing an image's curves, the deltas of the
comparison. Where no browser is installed the browser tests skip with the reason; in CI (env CI) they fail.

With CASTREAM_SCREENSHOTS=DIR the browser tests also write the README's screenshots there:
    CASTREAM_SCREENSHOTS=assets python -m pytest tests/reports/test_pages.py
"""
from __future__ import annotations

import json
import os
import pkgutil
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from objrecon_imagenet import main as objrecon_main
from tests.browser import headless_chromium, unavailable_reason
from tests.helpers import one_line_error, require_installed
from utils.data import DataSource, Preprocessing, build_dataset
from utils.evaluation.methods import build_methods
from utils.evaluation.model import load_trained_model
from utils.explain import BatchContext
from utils.faithfulness import METRIC_KEYS, METRICS, metric, paired_difference, predict
from utils.reports import compare
from utils.reports.report import thumbnails
from utils.runtime.io import read_csv
from utils.runtime.layout import EvaluationFolder

ROWS = list(range(12))             # the built-in val list is index-major: two images of each class
RELABELLED = (2, 7)                # rows whose label the test's list changes: the model's prediction is then wrong
SCREENSHOTS = os.environ.get("CASTREAM_SCREENSHOTS")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def relabelled_list(trained_runs, tmp_path_factory) -> Path:
    """The first 12 rows of the built-in validation list, two of them with another class, and its classes.txt."""
    data = Path(trained_runs["data"])
    folder = tmp_path_factory.mktemp("list")
    rows = (data / "val.csv").read_text().splitlines()[:len(ROWS)]
    for row in RELABELLED:
        path, label = rows[row].rsplit(",", 1)
        rows[row] = f"{path},{(int(label) + 1) % 6}"
    (folder / "val.csv").write_text("\n".join(rows) + "\n")
    shutil.copy(data / "classes.txt", folder / "classes.txt")
    return folder / "val.csv"


def objrecon(runs: dict, pool: str, store: Path, list_file: Path, *extra: str) -> Path:
    objrecon_main(["--state_root", str(runs[pool]), "--store_dir", str(store), "--root_data",
                   str(Path(runs["data"]) / "images"), "--path_lbl", str(list_file), "--workers", "0", *extra])
    return store


@pytest.fixture(scope="module")
def evaluations(trained_runs, relabelled_list, tmp_path_factory) -> dict[str, Path]:
    """Seed 0 of each model: Grad-CAM (and the stream's attention) and the random baseline; seed 1: the random
    baseline only, drawn from --seed, so that its rows have two folders and a spread that is not zero. The CA
    evaluation of seed 0 compares itself to GAP's (--compare: compare.html in its folder)."""
    root = tmp_path_factory.mktemp("pages")
    folders = {}
    for seed in (0, 1):
        first = seed == 0
        folders[f"gap{seed}"] = objrecon(trained_runs, "gap", root / f"gap{seed}", relabelled_list, "--method",
                                         *(["gradcam", "random"] if first else ["random"]), "--seed", str(seed),
                                         "--label", "GAP")
        folders[f"ca{seed}"] = objrecon(trained_runs, "ca", root / f"ca{seed}", relabelled_list, "--method",
                                        *(["gradcam", "attention", "random"] if first else ["random"]), "--seed",
                                        str(seed), "--label", "CA", *(["--compare", str(folders["gap0"])] if first
                                                                      else []))
    return folders


@pytest.fixture(scope="module")
def comparison(evaluations, tmp_path_factory) -> Path:
    """The command on the four folders: GAP and CA, two seeds each."""
    out = tmp_path_factory.mktemp("compare")
    compare.main([*(str(evaluations[name]) for name in ("gap0", "ca0", "gap1", "ca1")), "--out", str(out)])
    return out


def metrics_of(folder: Path, method: str) -> list[dict]:
    return [row for row in read_csv(EvaluationFolder(folder).metrics) if row["method"] == method]


def best_first(rows: list[dict], key: str) -> list[int]:
    """Dataset rows ordered best value first (ties in dataset order), the direction from the declaration."""
    sign = -1 if metric(key).higher_is_better else 1
    return [int(r["index"]) for r in sorted(rows, key=lambda r: sign * float(r[key]))]


def compare_error(argv: list[str]) -> str:
    return one_line_error(compare.main, argv)


class Tables(HTMLParser):
    """The tables of a page as a reader without JavaScript sees them: id -> rows of cell texts (head row first)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.row_attributes: dict[str, list[dict]] = {}
        self._table = self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id", f"table{len(self.tables)}")
            self.tables[self._table], self.row_attributes[self._table] = [], []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
            self.row_attributes[self._table].append(attrs)
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None


# --------------------------------------------------------------------------------------------------
# the pages as files


def test_report_reads_without_javascript(evaluations) -> None:
    folder = EvaluationFolder(evaluations["ca0"])
    text = folder.report.read_text()
    summary = json.loads(folder.summary.read_text())
    tables = Tables(text)
    head, *rows = tables.tables["summary"]
    assert [row[0] for row in rows] == ["gradcam", "attention", "random"]
    keys = {m.label + m.arrow: m.key for m in METRICS}
    assert head[:2] == ["method", "images"] and len(head) > 7
    for row in rows:
        assert row[1] == str(len(ROWS))
        for label, cell in zip(head[2:], row[2:]):
            assert cell == f"{summary['results'][row[0]][keys[label]]:.2f}", (row[0], label)
    gallery = tables.row_attributes["gallery"][1:]
    assert [int(r["data-index"]) for r in gallery] == ROWS
    for attributes in gallery:
        index = int(attributes["data-index"])
        assert (folder.thumbnail(index).read_bytes()[:3] == b"\xff\xd8\xff"
                and all(folder.thumbnail(index, m).is_file() for m in summary["results"]))
    assert len(list(folder.report_files.iterdir())) == len(ROWS) * (1 + 3)
    # offline: nothing fetched from elsewhere, the controls hidden until the script shows them
    assert 'src="http' not in text and 'href="http' not in text and '<form id="controls" hidden>' in text


def test_prediction_column_is_the_models_top1(evaluations, trained_runs, relabelled_list) -> None:
    rows = metrics_of(evaluations["ca0"], "gradcam")
    model, config = load_trained_model(str(trained_runs["ca"]))
    dataset = build_dataset(DataSource(root=Path(trained_runs["data"]) / "images", listing=relabelled_list),
                            Preprocessing(config["imsize"], mean=config["mean"], std=config["std"]), train=False)
    expected = predict(model, torch.stack([dataset[i][0] for i in ROWS])).tolist()
    assert [int(r["prediction"]) for r in rows] == expected
    assert all(r["prediction"] != r["label"] for r in rows if int(r["index"]) in RELABELLED)


def test_report_images_flag(trained_runs, relabelled_list, tmp_path) -> None:
    """--report_images N: N gallery rows spread over the evaluated rows; a rerun leaves no stale thumbnail; 0: none."""
    store = tmp_path / "eval"
    rows = ["--indexes", *map(str, ROWS[:6])]
    objrecon(trained_runs, "gap", store, relabelled_list, "--method", "random", *rows)
    folder = EvaluationFolder(store)
    assert len(list(folder.report_files.iterdir())) == 6 * 2
    objrecon(trained_runs, "gap", store, relabelled_list, "--method", "random", *rows, "--report_images", "4")
    shown = [int(r["data-index"]) for r in Tables(folder.report.read_text()).row_attributes["gallery"][1:]]
    assert len(shown) == 4 and shown[0] == ROWS[0] and shown[-1] == ROWS[5] and shown == sorted(shown)
    assert sorted(p.name for p in folder.report_files.iterdir()) == sorted(
        name for index in shown for name in (f"{index}.jpg", f"{index}_random.jpg"))
    objrecon(trained_runs, "gap", store, relabelled_list, "--method", "random", *rows, "--report_images", "0")
    assert not folder.report.exists() and not any(folder.report_files.glob("*.jpg"))


GALLERY_METHODS = ("gradcam", "gradcam++", "attention", "random")
THUMBNAIL_BUDGET = 4.5e6           # bytes for 300 images x (the image + 4 maps), leaving room for the page in 5 MB


def gallery_bytes(model, config: dict, images: torch.Tensor, targets: torch.Tensor) -> list[int]:
    """The bytes of each thumbnail of these images: the image and the four methods' maps over it."""
    methods = build_methods(model, list(GALLERY_METHODS), "auto")
    with torch.no_grad():                      # one forward: the CAMs and the attention reuse it, as in recognition
        feature_maps = model.forward_feature_maps(images)
        _, attentions = model.forward_head(feature_maps)
    rows = list(range(len(images)))
    context = BatchContext(rows, 0, feature_maps, attentions)
    maps = {name: method.explain_batch(images, targets, context) for name, method in methods.items()}
    sizes = []
    for k in rows:
        made = thumbnails(images[k], {name: m[k] for name, m in maps.items()}, config["mean"], config["std"])
        sizes += [len(made["image"]), *map(len, made["maps"].values())]
    return sizes


def test_thumbnails_of_300_images_x_4_methods_stay_under_the_budget(trained_runs) -> None:
    """The whole built-in validation set (300 images) with four methods' maps of the CA model, and photographs (five
    shipped with scikit-image, at 224 px, whose JPEGs are larger than the drawn shapes'): a gallery of 300 images
    stays under 4.5 MB of thumbnails, leaving room for the page within 5 MB (the slow test below writes it all)."""
    from skimage import data as photos

    model, config = load_trained_model(str(trained_runs["ca"]))
    data = Path(trained_runs["data"])
    dataset = build_dataset(DataSource(root=data / "images", listing=data / "val.csv"),
                            Preprocessing(config["imsize"], mean=config["mean"], std=config["std"]), train=False)
    assert len(dataset) == 300
    total = 0
    for start in range(0, len(dataset), 100):
        rows = range(start, start + 100)
        total += sum(gallery_bytes(model, config, torch.stack([dataset[i][0] for i in rows]),
                                   torch.tensor([dataset.targets[i] for i in rows])))
    assert total < THUMBNAIL_BUDGET, total

    pictures = [photos.astronaut(), photos.coffee(), photos.chelsea(), photos.rocket(), photos.hubble_deep_field()]
    pixels = torch.stack([torch.nn.functional.interpolate(torch.from_numpy(p).permute(2, 0, 1)[None].float() / 255,
                                                          size=(224, 224), mode="bilinear", antialias=True)[0]
                          for p in pictures])
    images = (pixels - torch.tensor(config["mean"])[:, None, None]) / torch.tensor(config["std"])[:, None, None]
    sizes = gallery_bytes(model, config, images, predict(model, images))
    assert np.mean(sizes) * 300 * (1 + len(GALLERY_METHODS)) < THUMBNAIL_BUDGET, np.mean(sizes)


@pytest.mark.slow
def test_report_of_300_images_x_4_methods_is_under_5_mb(trained_runs, tmp_path) -> None:
    data = Path(trained_runs["data"])
    store = objrecon(trained_runs, "ca", tmp_path / "eval", data / "val.csv", "--method", *GALLERY_METHODS,
                     "--batch_size", "100")
    folder = EvaluationFolder(store)
    size = folder.report.stat().st_size + sum(p.stat().st_size for p in folder.report_files.iterdir())
    assert len(list(folder.report_files.iterdir())) == 300 * 5
    print(f"report.html + report_files/ of 300 images x 4 methods: {size / 1e6:.2f} MB")   # the README quotes it
    assert size < 5e6, size


def test_objrecon_compare_writes_compare_page(evaluations) -> None:
    folder = EvaluationFolder(evaluations["ca0"])
    tables = Tables(folder.compare.read_text())
    rows = [row[:2] for row in tables.tables["results"][1:]]
    assert rows == [["gradcam", "GAP"], ["gradcam", "CA"], ["random", "GAP"], ["random", "CA"],
                    ["attention", "CA"]]
    assert folder.curves("compare").read_bytes()[:4] == b"\x89PNG"


def compare_expectations(evaluations: dict[str, Path]) -> dict[tuple[str, str], dict[str, tuple]]:
    """(method, label) -> key -> (mean over the folders with the method, spread, folders), from their summary.json."""
    expected = {}
    for label, names in (("GAP", ("gap0", "gap1")), ("CA", ("ca0", "ca1"))):
        summaries = [json.loads((evaluations[name] / "summary.json").read_text()) for name in names]
        for method in summaries[0]["results"]:
            results = [s["results"][method] for s in summaries if method in s["results"]]
            expected[method, label] = {key: (float(np.mean(v)), float(np.max(v) - np.min(v)), len(v)) for key, v in
                                       ((key, [r[key] for r in results]) for key in results[0] if key in METRIC_KEYS)}
    return expected


def test_compare_table_holds_means_spreads_and_deltas(comparison, evaluations) -> None:
    tables = Tables(EvaluationFolder(comparison).compare.read_text())
    head, *rows = tables.tables["results"]
    expected = compare_expectations(evaluations)
    assert [tuple(row[:2]) for row in rows] == [("gradcam", "GAP"), ("gradcam", "CA"), ("random", "GAP"),
                                                ("random", "CA"), ("attention", "CA")]
    column = head.index("AD↓")
    for row in rows:
        mean, spread, folders = expected[row[0], row[1]]["ad"]
        assert row[2] == str(folders) == ("2" if row[0] == "random" else "1")
        cell = row[column]
        assert cell.startswith(f"{mean:.2f} ± {spread / 2:.2f}" if folders > 1 else f"{mean:.2f}"), cell
        assert ("±" in cell) == (folders > 1)
        if row[1] == "CA" and (row[0], "GAP") in expected:
            assert f"Δ {mean - expected[row[0], 'GAP']['ad'][0]:+.2f}" in cell
    assert expected["random", "CA"]["ad"][1] > 0                              # the seeds differ for the random maps


def test_compare_errors_are_one_line(evaluations, trained_runs, relabelled_list, tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    message = compare_error([str(evaluations["gap0"]), str(empty), "--out", str(tmp_path / "out")])
    assert str(empty) in message and "summary.json" in message
    # another image count: objrecon --compare notes it and writes no compare.html; the command refuses it
    fewer = objrecon(trained_runs, "ca", tmp_path / "fewer", relabelled_list, "--method", "gradcam", "--indexes",
                     "0", "1", "2", "--compare", str(evaluations["gap0"]))
    assert "no compare.html written" in capsys.readouterr().out and not EvaluationFolder(fewer).compare.exists()
    message = compare_error([str(evaluations["gap0"]), str(fewer), "--out", str(tmp_path / "out")])
    assert str(fewer) in message and "3 images" in message and "12" in message
    assert "two or more" in compare_error([str(evaluations["gap0"]), "--out", str(tmp_path / "out")])
    # a folder whose metrics.csv lost rows: it no longer holds the images its summary.json counts
    broken = tmp_path / "broken"
    shutil.copytree(evaluations["gap0"], broken)
    lines = (broken / "metrics.csv").read_text().splitlines()
    (broken / "metrics.csv").write_text("\n".join(lines[:-1]) + "\n")
    message = compare_error([str(evaluations["gap0"]), str(broken), "--out", str(tmp_path / "out")])
    assert str(broken) in message and "metrics.csv" in message and "summary.json" in message


def test_compare_command_is_an_entry_point(evaluations, tmp_path, monkeypatch, capsys) -> None:
    """pyproject.toml's ca-stream-compare runs the command on sys.argv and returns nothing (an installed script exits
    with what its function returns); ``python -m utils.reports.compare`` is the same command."""
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entry = pkgutil.resolve_name(scripts[compare.SCRIPT])
    out = EvaluationFolder(tmp_path / "out")
    monkeypatch.setattr(sys, "argv", [compare.SCRIPT, str(evaluations["gap0"]), str(evaluations["ca0"]), "--out",
                                      str(out.path)])
    assert entry() is None
    assert out.compare.is_file() and f"open {out.compare}" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", [compare.SCRIPT, "--help"])
    with pytest.raises(SystemExit) as caught:
        entry()
    assert caught.value.code == 0 and capsys.readouterr().out.startswith(f"usage: {compare.SCRIPT} ")
    module = subprocess.run([sys.executable, "-m", "utils.reports.compare", "--help"], cwd=REPO, capture_output=True,
                            text=True, check=True)
    assert module.stdout.startswith(f"usage: {compare.COMMAND} ") and "--labels" in module.stdout


# --------------------------------------------------------------------------------------------------
# in a real browser


@pytest.fixture(scope="module")
def browser():
    require_installed(unavailable_reason())
    with headless_chromium(width=1600, height=1400) as driver:
        yield driver


def open_page(browser, path: Path) -> list[dict]:
    """Loads a page from the disk; returns what it logged to the console."""
    browser.get(path.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    return browser.get_log("browser")


def assert_images_decoded(browser) -> int:
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert images and all(complete and width > 0 for _, complete, width in images), \
        [src for src, complete, width in images if not (complete and width > 0)]
    return len(images)


def visible_gallery(browser) -> list[int]:
    return browser.execute_script("return Array.from(document.querySelectorAll('#gallery tbody tr'))"
                                  ".filter(r => r.offsetParent !== null).map(r => Number(r.dataset.index))")


def choose(browser, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    Select(browser.find_element(By.ID, select_id)).select_by_value(value)


def screenshot(browser, name: str) -> None:
    """The README's screenshot of the page, when CASTREAM_SCREENSHOTS names a folder."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        browser.execute_script("window.scrollTo(0, 0)")
        assert browser.save_screenshot(str(Path(SCREENSHOTS) / name))


def test_report_in_a_browser(browser, evaluations) -> None:
    from selenium.webdriver.common.by import By

    folder = EvaluationFolder(evaluations["ca0"])
    assert open_page(browser, folder.report) == []                           # no console error, no warning
    assert assert_images_decoded(browser) == 1 + len(ROWS) * (1 + 3)         # the curves plot and the gallery
    assert len(browser.find_elements(By.CSS_SELECTOR, "#summary tbody tr")) == 3
    assert browser.find_element(By.ID, "controls").is_displayed()
    assert visible_gallery(browser) == ROWS

    gradcam = metrics_of(folder.path, "gradcam")
    choose(browser, "sort-method", "gradcam")
    for key in ("insertion", "ad"):                                          # higher / lower is better
        choose(browser, "sort-metric", key)
        choose(browser, "sort-order", "best")
        assert visible_gallery(browser) == best_first(gradcam, key) != ROWS, key
        choose(browser, "sort-order", "worst")
        worst = [int(r["index"]) for r in sorted(gradcam, key=lambda r: (-1 if metric(key).higher_is_better else 1)
                                                 * -float(r[key]))]
        assert visible_gallery(browser) == worst, key
    choose(browser, "sort-metric", "")
    assert visible_gallery(browser) == ROWS

    labels = {int(r["index"]): int(r["label"]) for r in gradcam}
    wrong = {int(r["index"]) for r in gradcam if r["prediction"] != r["label"]}
    assert set(RELABELLED) <= wrong
    choose(browser, "filter-class", "2")
    assert visible_gallery(browser) == [i for i in ROWS if labels[i] == 2]
    choose(browser, "filter-outcome", "incorrect")
    assert visible_gallery(browser) == [i for i in ROWS if labels[i] == 2 and i in wrong]
    choose(browser, "filter-class", "")
    assert visible_gallery(browser) == sorted(wrong)
    choose(browser, "filter-outcome", "correct")
    assert visible_gallery(browser) == [i for i in ROWS if i not in wrong]
    assert browser.find_element(By.ID, "shown").text == f"showing {len(ROWS) - len(wrong)} of {len(ROWS)} images"
    choose(browser, "filter-outcome", "")

    # a click on an image: its curves, one line per method and curve, the legend's areas those of metrics.csv
    row = ROWS[3]
    browser.find_element(By.CSS_SELECTOR, f'#gallery tr[data-index="{row}"] img').click()
    panel = browser.find_element(By.ID, "image-curves")
    assert panel.is_displayed() and f"image {row}" in panel.text
    charts = panel.find_elements(By.CSS_SELECTOR, "svg.curve-chart")
    assert [c.get_attribute("data-metric") for c in charts] == ["insertion", "deletion"]
    steps = json.loads(folder.summary.read_text())["protocol"]["steps"]
    for chart in charts:
        lines = chart.find_elements(By.TAG_NAME, "polyline")
        assert [line.get_attribute("data-method") for line in lines] == ["gradcam", "attention", "random"]
        assert all(len(line.get_attribute("points").split()) == steps + 1 for line in lines)
    for method in ("gradcam", "attention", "random"):
        value = 100 * float(next(r for r in metrics_of(folder.path, method) if int(r["index"]) == row)["insertion"])
        assert f"{method}: I {value:.1f}" in panel.text
    # the drawn insertion curve is the image's: its area, read back from the pixels, is metrics.csv's
    points = np.array([[float(v) for v in p.split(",")] for p in
                       charts[0].find_element(By.TAG_NAME, "polyline").get_attribute("points").split()])
    top, height = 20, 200 - 20 - 30                                       # report.js's chart frame
    scores = 1 - (points[:, 1] - top) / height
    area = (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (len(scores) - 1)
    expected = float(next(r for r in gradcam if int(r["index"]) == row)["insertion"])
    assert area == pytest.approx(expected, abs=2e-3)
    choose(browser, "sort-metric", "insertion")
    choose(browser, "sort-order", "best")
    screenshot(browser, "report_html.png")


def test_compare_page_in_a_browser(browser, comparison, evaluations) -> None:
    from selenium.webdriver.common.by import By

    assert open_page(browser, EvaluationFolder(comparison).compare) == []
    assert assert_images_decoded(browser) > 1
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert len(rows) == 5
    expected = compare_expectations(evaluations)
    deltas = browser.find_elements(By.CSS_SELECTOR, "#results .delta")
    shown = {(d.find_element(By.XPATH, "./ancestor::tr").find_element(By.TAG_NAME, "td").text,
              d.get_attribute("data-key")): d for d in deltas if d.get_attribute("data-key") != "accuracy"}
    assert {key for _, key in shown} >= {"ad", "ai", "ag", "insertion", "deletion"}
    for (method, key), element in shown.items():
        mean, base = expected[method, "CA"][key][0], expected[method, "GAP"][key][0]
        delta = mean - base
        assert element.is_displayed() and element.text == f"Δ {delta:+.2f}", (method, key)
        # coloured only when the paired interval (the k-th CA folder against the k-th GAP folder) excludes 0
        differences, images = [], []
        for gap, ca in (("gap0", "ca0"), ("gap1", "ca1")):
            base_rows = {r["index"]: float(r[key]) for r in metrics_of(evaluations[gap], method)}
            for row in metrics_of(evaluations[ca], method):
                differences.append(metric(key).scale * (float(row[key]) - base_rows[row["index"]]))
                images.append(row["index"])
        interval = paired_difference(differences, images)
        assert interval.mean == pytest.approx(delta, abs=1e-6)
        verdict = "within" if not interval.significant else (
            "better" if (delta > 0) == metric(key).higher_is_better else "worse")
        assert verdict in element.get_attribute("class").split(), (method, key)
        assert f"[{interval.ci_low:+.2f}, {interval.ci_high:+.2f}]" in element.find_element(
            By.XPATH, "following-sibling::span[@class='interval']").text

    # one metric's gains and losses at a time; the largest gain first
    sections = browser.find_elements(By.CSS_SELECTOR, "section.pairs")
    assert [s.is_displayed() for s in sections].count(True) == 1
    choose(browser, "pair-metric", "insertion")
    visible = [s for s in sections if s.is_displayed()]
    assert [s.get_attribute("data-metric") for s in visible] == ["insertion"]
    gains = visible[0].find_element(By.CSS_SELECTOR, '.pair-list.gains[data-method="gradcam"]')
    gap = {int(r["index"]): float(r["insertion"]) for r in metrics_of(evaluations["gap0"], "gradcam")}
    ca = {int(r["index"]): float(r["insertion"]) for r in metrics_of(evaluations["ca0"], "gradcam")}
    ranked = sorted(ROWS, key=lambda i: -(ca[i] - gap[i]))                  # Grad-CAM: one folder per label
    figures = gains.find_elements(By.CSS_SELECTOR, "figure.pair")
    assert [int(f.get_attribute("data-index")) for f in figures] == [i for i in ranked if ca[i] > gap[i]][:6]
    screenshot(browser, "compare_html.png")

    assert open_page(browser, EvaluationFolder(evaluations["ca0"]).compare) == []   # objrecon --compare's page
    assert_images_decoded(browser)
