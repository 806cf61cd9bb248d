"""`iqt report`'s HTML page: self-contained, every embedded image decodes, every figure has a caption."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ImageQualityTransferLib.apps import report, report_page
from ImageQualityTransferLib.core import tensors


def _field(shape, seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=shape + (3,))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    m = 0.4e-3 * np.eye(3) + 1.0e-3 * v[..., :, None] * v[..., None, :]
    return tensors.from_matrix(m).astype(np.float32)


@pytest.fixture(scope="module")
def synthetic_page(tmp_path_factory) -> Path:
    """A page of a small made-up field (cubic, its uncertainty, metrics and tract rows, two tracts), written once for
    the two tests that read it: the decoding check and the headless rendering."""
    shape = (12, 14, 10)
    aff = np.diag([-1.5, 1.5, 2.0, 1.0])
    truth = _field(shape, 0)
    pred = truth + np.float32(1e-5) * np.random.default_rng(1).normal(size=truth.shape).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[2:-2, 2:-2, 2:-2] = True
    lines = [np.array([[0, 0, 0], [3, 1, 2], [6, 1, 4]], np.float32), np.array([[1, 5, 2], [1, 8, 3]], np.float32)]
    rows = [{"method": "cubic", "interior": {"dt_rmse": 10.0, "ratio_to_cubic": 1.0, "fa_rmse": 0.05},
             "exterior": {"dt_rmse": 20.0, "ratio_to_cubic": 1.0}, "seconds": 0.1}]
    return report_page.write_report(
        tmp_path_factory.mktemp("synthetic") / "r.html", "test <run>", [("cubic", pred), ("ground truth", truth)], mask,
        [1.5, 1.5, 2.0], aff,
        uncertainty={"cubic": np.full(shape, 2e-5, np.float32)}, truth=truth, metrics_rows=rows,
        tract_rows={"cubic": {"tract_dice": 0.8, "tract_fp_fraction": 0.1, "n_streamlines": 2}},
        tracts={"ground truth": lines, "cubic": lines[:1]})


def test_report_is_self_contained_and_every_image_decodes(synthetic_page):
    from PIL import Image

    text = synthetic_page.read_text()
    assert "test &lt;run&gt;" in text and "<script" not in text
    assert not re.search(r'src="(?!data:image/png;base64,)', text)  # nothing fetched from outside
    figures = re.findall(r"<figure>(.*?)</figure>", text, re.S)
    assert len(figures) == 4  # FA views, uncertainty, errors, tractography
    for fig in figures:
        assert re.search(r"<figcaption>[^<]{20,}</figcaption>", fig)
        b64 = re.search(r'src="data:image/png;base64,([^"]+)"', fig).group(1)
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        img.load()
        arr = np.asarray(img.convert("L"))
        assert arr.shape[0] > 100 and arr.std() > 5  # not blank
    assert "<table>" in text and "0.800" in text


def test_the_direction_map_is_on_its_fixed_scale_and_the_sd_on_its_own(tmp_path, monkeypatch):
    """The direction figure's colour bar runs 0-60° whatever the map holds (a random axis's 61° at its top, as in
    Slicer), the SD figure's to its own 99th percentile: read off the colour bars matplotlib draws."""
    from matplotlib.figure import Figure

    from ImageQualityTransferLib.core.direction import SHOWN_TOP_DEGREES

    tops = []
    real = Figure.colorbar

    def record(self, mappable, *args, **kwargs):
        tops.append(float(mappable.norm.vmax))
        return real(self, mappable, *args, **kwargs)

    monkeypatch.setattr(Figure, "colorbar", record)
    shape = (12, 14, 10)
    truth = _field(shape, 0)
    mask = np.zeros(shape, bool)
    mask[2:-2, 2:-2, 2:-2] = True
    report_page.write_report(tmp_path / "r.html", "run", [("cubic", truth)], mask, [1.5, 1.5, 2.0],
                             np.diag([-1.5, 1.5, 2.0, 1.0]), uncertainty={"cubic": np.full(shape, 2e-5, np.float32)},
                             direction={"cubic": np.full(shape, 25.0, np.float32)})
    assert len(tops) == 2
    assert np.isclose(tops[0], 2e-5 * tensors.SHOWN_UNIT) and tops[1] == SHOWN_TOP_DEGREES


CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")) if p and
                 shutil.os.path.exists(p)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run "
                                             "installs it as root), so the page is not rendered headless; "
                                             "test_report_is_self_contained_and_every_image_decodes checks it instead")
@pytest.mark.slow
def test_report_renders_headless(tmp_path, synthetic_page):  # pragma: no cover - only where Chromium is installed
    """Render the page offline in headless Chromium (fresh profile, no network features) and check the
    screenshot shows the page: many distinct colours and a good share of non-background pixels."""
    from PIL import Image

    test_report_is_self_contained_and_every_image_decodes(synthetic_page)
    shot = tmp_path / "shot.png"
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,2400",
           synthetic_page.as_uri()]
    proc = subprocess.run(cmd, timeout=120, capture_output=True, text=True)
    assert shot.exists(), f"Chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (2400, 1200)
    flat = img.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    background = colours[np.argmax(counts)]
    not_background = np.any(flat != background, axis=1).mean()
    assert len(colours) > 500, f"only {len(colours)} distinct colours: the page rendered (nearly) blank"
    assert not_background > 0.05, f"only {not_background:.1%} of the screenshot differs from the background"


@pytest.mark.slow
def test_a_report_of_ones_own_tensors_shows_every_output_and_no_scores(tmp_path, small_subject, phantom_subject,
                                                                       capsys):
    """`iqt report --input`: a user's own low-res tensors (here made unmasked, with a mask on the input's grid): the
    input, cubic and the method, the method's uncertainty and direction maps and the tracts, with no errors or
    scores (there is no reference); the input's warnings head the page; --mask without --input is one line, exit 2."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.dmri.subject import make_case

    case = make_case(phantom_subject, 2, style="unmasked")
    fileio.save_tensor(case.lr, tmp_path / "lr.nii.gz")
    assert main(["--threads", "1", "report", "-o", str(tmp_path / "own.html"), "--input", str(tmp_path / "lr.nii.gz"),
                 "--methods", "biqt", "--n-seeds", "300"]) == 0
    text = (tmp_path / "own.html").read_text()
    figures = re.findall(r"<figure>(.*?)</figure>", text, re.S)
    assert len(figures) == 4, len(figures)  # FA views, uncertainty, direction uncertainty, tractography
    assert "<h2>Errors</h2>" not in text and "<h2>Metrics</h2>" not in text and "no reference is known" in text
    # what ran: the model and its weights' SHA256, the tracking's settings (the page had named the methods only)
    assert re.search(r"What ran: biqt: biqt_x2(_noisy)?\.json \(weights SHA256 [0-9a-f]{12}\)", text), text[:3000]
    assert "tracts: 300 random seeds, FA stop 0.2" in text and "each panel draws at most 1,500" in text
    assert "estimated from the tensors" in text  # no mask given: the support's warning is on the page
    assert "more than 24 mm inside the edge of the brain estimated" in figures[1]  # its rim does not set the scale
    said = capsys.readouterr().err.splitlines()  # and on the terminal, once
    assert len([line for line in said if "estimated from the tensors" in line]) == 1, said
    for name in ("low-res input", "cubic", "biqt"):
        assert name in figures[0]
    assert main(["report", "-o", str(tmp_path / "x.html"), "--mask", str(tmp_path / "lr.nii.gz")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "x.html").exists()
    for bad in (["--input", str(tmp_path / "lr.nii.gz"), "--n-seeds", "0"], ["--voxel-size", "1.5"],
                ["--subject", str(small_subject), "--tensor-order", "fsl"]):
        assert main(["report", "-o", str(tmp_path / "x.html"), *bad]) == 2
        assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "x.html").exists()
    # read in the wrong order: its one line, and nothing before it (it came after the methods skipped)
    fileio.save_tensor(case.lr, tmp_path / "fsl.nii.gz", order="fsl")
    assert main(["report", "-o", str(tmp_path / "x.html"), "--input", str(tmp_path / "fsl.nii.gz"), "--tensor-order",
                 "dipy"]) == 2
    said = capsys.readouterr()
    assert said.out == "" and said.err.count("\n") == 1 and "--tensor-order fsl" in said.err, said
    assert not (tmp_path / "x.html").exists()


def test_a_report_of_ones_own_tensors_says_what_reading_them_said(tmp_path, small_subject, phantom_subject, capsys):
    """A warning from reading the input (here a fractional mask, taken as brain wherever above 0) heads the page as
    well as the terminal, marked as a warning."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.dmri.subject import make_case

    case = make_case(phantom_subject, 2, style="tight")
    fileio.save_tensor(case.lr, tmp_path / "lr.nii.gz")
    fileio.save_scalar(case.lr_mask.replace(data=case.lr_mask.data * 0.9, kind="scalar"), tmp_path / "m.nii.gz")
    assert main(["--threads", "1", "report", "-o", str(tmp_path / "own.html"), "--input", str(tmp_path / "lr.nii.gz"),
                 "--mask", str(tmp_path / "m.nii.gz"), "--methods", "cubic", "--no-tracts", "--voxel-size",
                 str(float(max(case.lr.voxel_size)) / 2)]) == 0  # the factors --voxel-size chooses: 2 here
    text = (tmp_path / "own.html").read_text()
    assert "Warning: " in text and "fractional values" in text
    assert "fractional values" in capsys.readouterr().err


def test_orientation_letters_sit_beside_the_image_not_on_it():
    """On a slice the tissue fills (a coronal panel of a tight field), every orientation letter lies in the black margin
    around the image, not on its pixels (S and I sat on bright error pixels)."""
    import numpy as np

    from ImageQualityTransferLib.apps.figures import draw_letters
    from ImageQualityTransferLib.apps.report_figures import _new_figure

    fig, axes = _new_figure(1, 2)
    for ax, aspect in zip(axes[0], (1.0, 3.0)):
        ax.imshow(np.ones((20, 60)), aspect=aspect, cmap="gray", vmin=0, vmax=1)
        draw_letters(ax, "coronal")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax in axes[0]:
        pixels = ax.images[0].get_window_extent(renderer)
        for text in ax.texts:
            box = text.get_window_extent(renderer)
            assert not box.overlaps(pixels), (text.get_text(), box, pixels)
    fig, axes = _new_figure(1, 1)  # a tract panel: y runs upwards there, and is widened upwards
    ax = axes[0, 0]
    ax.set_xlim(-60, 60)
    ax.set_ylim(-40, 50)
    draw_letters(ax, "coronal")
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 < -60 and x1 > 60 and y0 < -40 and y1 > 50


# The methods of the module's one `iqt report` of small_subject, read by the three tests below: interpolators and
# learned methods out of registry order, the default among them (methods.default_method(), checked in the fixture).
SUBJECT_REPORT_METHODS = ["linear", "cubic", "nearest", "global-linear", "rf", "biqt", "deep"]


@pytest.fixture(scope="module")
def subject_report_text(tmp_path_factory, small_subject):
    """The page of `iqt report --subject` of small_subject with SUBJECT_REPORT_METHODS (200 seeds), made once for the
    tests that only read it (each had run its own, of two to four methods, with cubic and the tracts done again)."""
    from ImageQualityTransferLib import methods
    from ImageQualityTransferLib.apps.cli import main

    assert methods.default_method() in SUBJECT_REPORT_METHODS, methods.default_method()
    path = tmp_path_factory.mktemp("report") / "r.html"
    assert main(["report", "--subject", str(small_subject), "-o", str(path), "--methods",
                 ",".join(SUBJECT_REPORT_METHODS), "--n-seeds", "200"]) == 0
    return path.read_text()


@pytest.mark.slow
def test_report_end_to_end(subject_report_text):
    """`iqt report --subject` end to end on the coarse phantom: a self-contained page (no script, every image inline)
    of five captioned figures, none blank, and the metrics table (it ran its own report of cubic and biqt in
    Testing/apps/test_analysis_e2e.py)."""
    from PIL import Image

    text = subject_report_text
    assert "<script" not in text and not re.search(r'src="(?!data:image/png;base64,)', text)
    figures = re.findall(r"<figure>(.*?)</figure>", text, re.S)
    assert len(figures) == 5  # FA views, uncertainty, direction uncertainty, errors, tractography
    for fig in figures:
        assert re.search(r"<figcaption>[^<]{20,}</figcaption>", fig)
        img = Image.open(io.BytesIO(base64.b64decode(re.search(r'base64,([^"]+)"', fig).group(1))))
        assert np.asarray(img.convert("L")).std() > 5
    assert "biqt" in text and "<table>" in text


@pytest.mark.slow
def test_one_name_and_one_unit_for_each_thing_on_the_page(subject_report_text):
    """`iqt report --subject`: the Metrics and tract tables name each volume as the figures do (the table's "nearest"
    was the FA figure's "low-res input", the tract table's "reference" the tract figure's "ground truth"); the DT-RMSE
    columns say their unit and how it converts to the colour bars' µm²/ms; the FA figure's columns in --input's order
    (the input, cubic, then the methods)."""
    text = subject_report_text
    tables = re.findall(r"<table>(.*?)</table>", text, re.S)
    metrics, tracts = tables
    assert "<td>low-res input (nearest)</td>" in metrics and "<td>nearest</td>" not in metrics
    assert "<td>ground truth</td>" in tracts and "reference" not in tracts
    assert "<td>low-res input (nearest)</td>" in tracts  # the input's blocks tracked on the high-res grid
    assert "<th>interior DT-RMSE (10⁻⁵ mm²/s)</th>" in metrics
    assert "100 of these make 1 µm²/ms" in text
    fa_caption = re.findall(r"<figcaption>(.*?)</figcaption>", text, re.S)[0]
    assert ("one column per volume: low-res input (nearest), cubic, linear, global-linear, rf, biqt, deep, ground truth."
            in fa_caption), fa_caption


@pytest.mark.slow
def test_the_tract_figure_draws_the_default_and_the_best_method(subject_report_text):
    """The tract figure draws, besides cubic, the default method and the best learned method by the page's tract
    table, and says which is which (it drew the first two learned methods in registry order, global-linear and rf,
    whatever the default or the scores)."""
    from ImageQualityTransferLib import methods

    default = methods.default_method()
    text = subject_report_text
    tracts = re.findall(r"<table>(.*?)</table>", text, re.S)[1]
    dice = {m: float(d) for m, d in re.findall(r"<tr><td>([^<]+)</td><td>([0-9.]+)</td>", tracts)}
    best = max(["global-linear", "rf", "biqt", default], key=lambda m: dice[m])
    caption = re.findall(r"<figcaption>(Deterministic tractography.*?)</figcaption>", text, re.S)[0]
    drawn = caption.split("Drawn: ")[1].split(" (")[0].split(", ")
    assert drawn == ["ground truth", "low-res input", "cubic", *dict.fromkeys([default, best])], (drawn, dice)
    assert f"{default}, the default method" in caption
    assert f"{best}, the best learned method by tract-density Dice in the table" in caption
    assert report_page.tract_methods(["cubic", "rf", "biqt"]) == ["rf"]  # no default, no scores: the first learned


def test_a_colour_bar_is_pointed_where_the_map_reaches_above_its_top(tmp_path, monkeypatch):
    """Radiologist's audit: the SD figure's bar ended at its 99th percentile while the brain's rim lay several times
    higher, all in the top colour. Its bar is now pointed at the top (matplotlib's extend="max") where a map reaches
    above it; the direction bar, whose map stays within 0-60° here, is not."""
    from matplotlib.figure import Figure

    extends = []
    real = Figure.colorbar

    def record(self, mappable, *args, **kwargs):
        extends.append(kwargs.get("extend"))
        return real(self, mappable, *args, **kwargs)

    monkeypatch.setattr(Figure, "colorbar", record)
    shape = (12, 14, 10)
    mask = np.zeros(shape, bool)
    mask[2:-2, 2:-2, 2:-2] = True
    sd = np.full(shape, 2e-5, np.float32)
    sd[4, 4, 4:6] = 9e-5  # two voxels far above the rest
    report_page.write_report(tmp_path / "r.html", "run", [("cubic", _field(shape, 0))], mask, [1.5, 1.5, 2.0],
                             np.diag([-1.5, 1.5, 2.0, 1.0]), uncertainty={"cubic": sd},
                             direction={"cubic": np.full(shape, 25.0, np.float32)})
    assert extends == ["max", "neither"]



@pytest.mark.slow
def test_the_uncertainty_maps_share_one_logarithmic_scale_on_which_a_lower_map_keeps_its_structure(tmp_path, monkeypatch):
    """A review: on one linear scale the CNNs' SD, several times lower than the forests', was one flat dark colour; each
    map on its own scale then drew the lower map brighter, the opposite of the figures. The maps now share one
    logarithmic scale from their 1st to their 99th percentile (read off the images matplotlib draws): the lower map
    spans a third of the colours, one colour is one value in both columns, each column's title names its median, and
    the direction maps stay on their one linear 0-60° scale."""
    from matplotlib.axes import Axes
    from matplotlib.colors import LogNorm

    from ImageQualityTransferLib.core.direction import SHOWN_TOP_DEGREES

    drawn, titles = [], []
    real_imshow, real_title = Axes.imshow, Axes.set_title

    def imshow(self, X, *args, **kwargs):
        image = real_imshow(self, X, *args, **kwargs)
        if kwargs.get("cmap") != "gray":
            drawn.append(image)
        return image

    def set_title(self, label, *args, **kwargs):
        titles.append(label)
        return real_title(self, label, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", imshow)
    monkeypatch.setattr(Axes, "set_title", set_title)
    shape = (12, 14, 10)
    mask = np.zeros(shape, bool)
    mask[2:-2, 2:-2, 2:-2] = True
    rng = np.random.default_rng(0)
    forest = rng.uniform(0.4e-3, 1.0e-3, shape).astype(np.float32)
    cnn = rng.uniform(0.05e-3, 0.15e-3, shape).astype(np.float32)
    report_page.write_report(tmp_path / "r.html", "run", [("cubic", _field(shape, 0))], mask, [1.5, 1.5, 2.0],
                             np.diag([-1.5, 1.5, 2.0, 1.0]), uncertainty={"biqt": forest, "deep-hetero-var1": cnn},
                             direction={"biqt": np.full(shape, 25.0, np.float32),
                                        "deep-hetero-var1": np.full(shape, 20.0, np.float32)})
    sd = [im for im in drawn if isinstance(im.norm, LogNorm)]
    assert len(sd) == 6, [type(im.norm).__name__ for im in drawn]  # two maps in three planes, all logarithmic
    both = np.concatenate([forest[mask], cnn[mask]]) * tensors.SHOWN_UNIT
    scales = [(im.norm.vmin, im.norm.vmax) for im in sd]
    assert np.allclose(scales, [(np.percentile(both, 1), np.percentile(both, 99))] * 6, rtol=1e-5), scales
    low = np.asarray(sd[0].norm(cnn[mask] * tensors.SHOWN_UNIT))
    assert np.percentile(low, 95) - np.percentile(low, 5) > 0.3, (low.min(), low.max())
    degrees = [im for im in drawn if not isinstance(im.norm, LogNorm) and im.norm.vmax == SHOWN_TOP_DEGREES]
    assert len(degrees) == 6 and all(im.norm.vmin == 0 for im in degrees)
    medians = [t.split("\n")[1] for t in titles if "\n" in t]
    assert medians == [f"median {np.median(m[mask]) * tensors.SHOWN_UNIT:#.2g}" for m in (forest, cnn)], titles


@pytest.mark.slow
def test_the_printed_page_is_a4(tmp_path, page_browser):
    """A review: printed from Chromium the page came out on Letter paper (612 x 792 pt, Chromium's default). The page
    asks for A4 (@page): every page of the PDF Chromium prints is 210 x 297 mm (595.3 x 841.9 pt), and laid out as
    printed, no figure reaches past the page's printable width (210 mm less the margins)."""
    shape = (6, 6, 6)
    with pytest.MonkeyPatch.context() as mp:  # the FA figure as wide as report_figures draws six volumes, not drawn
        mp.setattr(report_page, "fa_views", _blank_views)
        page = report_page.write_report(tmp_path / "r.html", "run", [(f"m{i}", _field(shape, 0)) for i in range(6)],
                                        np.ones(shape, bool), [2.0] * 3, np.diag([-2.0, 2.0, 2.0, 1.0]),
                                        uncertainty={"m1": np.full(shape, 2e-4, np.float32)})
    tab = page_browser.new_page()
    try:
        tab.goto(page.as_uri())
        pdf = tab.pdf(prefer_css_page_size=True, print_background=True)
        printable = round((210 - 2 * 12) / 25.4 * 96)  # CSS px across the page within its 12 mm margins
        tab.set_viewport_size({"width": printable, "height": 1000})
        tab.emulate_media(media="print")
        widest = tab.evaluate("() => Math.max(...[...document.querySelectorAll('figure img')].map("
                              "i => i.getBoundingClientRect().right))")
    finally:
        tab.close()
    boxes = [tuple(float(x) for x in b) for b in re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)]
    assert boxes and all(abs(w - 595.3) < 1.5 and abs(h - 841.9) < 1.5 for w, h in boxes), boxes
    assert widest <= printable, (widest, printable)


def _tall_views(columns, *_) -> str:
    """A PNG of the size report_figures.fa_views draws for `columns` (6 rows of panels, as tall as drawn), for the
    tests that read the printed page, not its drawing; its shade from the volumes' count and first name, so that two
    rows are two images in the PDF, not one drawn twice."""
    from PIL import Image

    from ImageQualityTransferLib.apps import report_figures

    size = [round((2.1 * n + d) * report_figures.DPI) for n, d in ((len(columns), 0.6), (6, 0.3))]
    shade = 60 + (len(columns) * 31 + sum(map(ord, str(columns[0][0])))) % 160
    out = io.BytesIO()
    Image.new("RGB", tuple(size), (shade,) * 3).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def _pages_images(pdf: bytes) -> list[list[int]]:
    """The image objects each page of a PDF Chromium prints draws (its page dictionaries are not compressed): an
    image drawn on two pages is cut across them."""
    pages = []
    for o in re.finditer(rb"\d+ 0 obj\s*<<(.*?)\nendobj", pdf, re.S):
        if re.search(rb"/Type /Page\b(?!s)", o.group(1)):
            drawn = re.search(rb"/XObject <<([^>]*)>>", o.group(1))
            pages.append([int(r) for r in re.findall(rb"(\d+) 0 R", drawn.group(1))] if drawn else [])
    return pages


def _heading_and_caption_with_images(pdf: bytes, counts: list[int], words: list[list[str]], tmp_path) -> None:
    """In the PDF as printed, each figure's heading is on the page of its first image and its caption opens on the page
    of its last (poppler's pdftotext reads each page's text): a heading alone at a page's foot, or a caption on the next
    page, had passed the layout's heights (a review read the printed PDFs so)."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    (tmp_path / "page.pdf").write_bytes(pdf)
    pages = _pages_images(pdf)
    page_of = [n for n, drawn in enumerate(pages, 1) for _ in drawn]  # each image's page, in the page's order

    def text(n: int) -> str:
        out = subprocess.run(["pdftotext", "-f", str(n), "-l", str(n), str(tmp_path / "page.pdf"), "-"],
                             capture_output=True, text=True, check=True).stdout
        return " ".join(out.split())

    assert sum(bool(h) for h, _ in words) >= 2 and all(c for _, c in words), words  # headings and captions to find
    first = 0
    for count, (heading, caption) in zip(counts, words):
        if count == 0:
            continue
        top, bottom = page_of[first], page_of[first + count - 1]
        heading, opening = " ".join(heading.split()), " ".join(caption.split()[:4])
        assert not heading or heading in text(top), (heading, top, [text(n)[:80] for n in range(1, len(pages) + 1)])
        assert not opening or opening in text(bottom), (opening, bottom, [text(n)[:80] for n in range(1, len(pages) + 1)])
        first += count


@pytest.mark.slow
@pytest.mark.parametrize("volumes", [4, 8, 12])
def test_each_printed_figure_fits_one_page_with_its_caption(tmp_path, page_browser, volumes):
    """Printed on A4: a figure of one image (the FA figure of four volumes, as `iqt report --input` draws it) fits one
    page from its heading to its caption's end (its caption had printed on the next page). A figure of several images
    (rows of eight or twelve volumes) prints each at the page's width, or 240 mm high where taller, and none cut across
    pages: shrunk together to one page they had printed at 28 % of the page's width."""
    shape = (6, 6, 6)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report_page, "fa_views", _tall_views)
        page = report_page.write_report(tmp_path / "r.html", "run", [(f"m{i}", _field(shape, 0)) for i in range(volumes)],
                                        np.ones(shape, bool), [2.0] * 3, np.diag([-2.0, 2.0, 2.0, 1.0]),
                                        uncertainty={"m1": np.full(shape, 2e-4, np.float32)})
    printable = [round((side - 2 * 12) / 25.4 * 96) for side in (210, 297)]  # CSS px within the page's 12 mm margins
    tab = page_browser.new_page()
    try:
        tab.goto(page.as_uri())
        pdf = tab.pdf(prefer_css_page_size=True, print_background=True)
        tab.set_viewport_size({"width": printable[0], "height": 1000})
        tab.emulate_media(media="print")
        spans = tab.evaluate("""() => [...document.querySelectorAll('figure')].map(f => {
            const h = f.previousElementSibling, top = (h && h.tagName == 'H2' ? h : f).getBoundingClientRect().top;
            return [[...f.querySelectorAll('img')].map(i => { const r = i.getBoundingClientRect();
                        return [i.naturalWidth, i.naturalHeight, r.width, r.height]; }),
                    f.getBoundingClientRect().bottom - top]; })""")
        words = tab.evaluate("""() => [...document.querySelectorAll('figure')].map(f => {
            const h = f.previousElementSibling, c = f.querySelector('figcaption');
            return [h && h.tagName == 'H2' ? h.textContent : '', c ? c.textContent : '']; })""")
    finally:
        tab.close()
    assert len(spans[0][0]) == (1 if volumes <= report_page.MAX_COLUMNS else 2), spans
    for images, height in spans:
        if len(images) == 1:
            assert height <= printable[1], (spans, printable)
            continue
        for w, h, shown_w, shown_h in images:  # as large as the page's width and 240 mm allow, drawn whole
            full = min(printable[0], w, w * (240 / 25.4 * 96) / h)
            assert abs(shown_w - full) <= 1 and abs(shown_h / shown_w - h / w) < 0.01, (images, printable)
    drawn = [i for p in _pages_images(pdf) for i in p]
    assert len(drawn) == len(set(drawn)) == sum(len(images) for images, _ in spans), _pages_images(pdf)
    # last: it skips where pdftotext is missing, after the checks above have run
    _heading_and_caption_with_images(pdf, [len(images) for images, _ in spans], words, tmp_path)


@pytest.mark.slow
def test_a_report_runs_a_model_of_ones_own_and_says_so(tmp_path, small_subject, phantom_subject, capsys, monkeypatch):
    """`iqt report --model METHOD=PATH`, as `iqt benchmark`: the method joins --methods and runs that model (for a
    subject and for --input), the page names it; a wrong one is one line, nothing written, the model unchanged."""
    import json
    from pathlib import Path

    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.dmri.subject import make_case
    from ImageQualityTransferLib.fileio import model_files
    from ImageQualityTransferLib.methods.base import Method

    for suffix in (".npz", ".json"):
        shutil.copy(Path(model_files.MODELS_DIR) / f"global-linear_x2{suffix}", tmp_path / f"mine{suffix}")
    side = json.loads((tmp_path / "mine.json").read_text())
    (tmp_path / "mine.json").write_text(json.dumps({**side, "weights": "mine.npz"}))
    ran = []
    real = Method.predict

    def predict(self, *a, **k):
        ran.append((self.name, self.model_path))
        return real(self, *a, **k)

    monkeypatch.setattr(Method, "predict", predict)
    mine = str(tmp_path / "mine.npz")
    case = make_case(phantom_subject, 2, style="tight")
    fileio.save_tensor(case.lr, tmp_path / "lr.nii.gz")
    for source in (["--subject", str(small_subject)], ["--input", str(tmp_path / "lr.nii.gz")]):
        ran.clear()
        assert main(["--threads", "1", "report", "-o", str(tmp_path / "r.html"), *source, "--methods", "cubic",
                     "--no-tracts", "--model", f"global-linear={mine}"]) == 0
        assert ("global-linear", mine) in ran and ("global-linear", None) not in ran, ran
        assert f"global-linear: the model {mine} (given), not the shipped one" in (tmp_path / "r.html").read_text()
    capsys.readouterr()
    before = (tmp_path / "mine.json").read_bytes()
    for out, model, words in (("x.html", f"rf={mine}", f"give it as --model global-linear={mine}"),
                              ("x.html", "cubic=m.npz", "not a learned method"),
                              ("mine.json", f"global-linear={mine}", "is an input of this run")):
        assert main(["report", "-o", str(tmp_path / out), "--subject", str(small_subject), "--methods", "cubic",
                     "--no-tracts", "--model", model]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.html").exists() and (tmp_path / "mine.json").read_bytes() == before


def test_colour_fa_is_coloured_in_the_world_on_an_oblique_scan(tmp_path, monkeypatch):
    """A fibre along world left-right on a grid turned 30 degrees about S: its colour FA is read in world RAS (red), not
    in the voxel axes (where it had been partly green: the caption's 'red left-right' was not the world's)."""
    from ImageQualityTransferLib.apps import report_figures

    shape = (10, 10, 8)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    affine = np.array([[2 * c, -2 * s, 0, 0], [2 * s, 2 * c, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]])
    world = 0.3e-3 * np.eye(3) + 1.2e-3 * np.outer([1, 0, 0], [1, 0, 0])
    in_voxels = affine[:3, :3].T / 2 @ world @ affine[:3, :3] / 2  # the same fibre in the voxel axes
    t = np.broadcast_to(tensors.from_matrix(in_voxels), shape + (6,)).astype(np.float32)
    seen = []
    real = tensors.color_fa
    monkeypatch.setattr(report_figures.tensors, "color_fa", lambda a: seen.append(real(a)) or seen[-1])
    report_page.write_report(tmp_path / "r.html", "oblique", [("cubic", t)], np.ones(shape, bool), [2, 2, 2], affine)
    rgb = np.concatenate([x.reshape(-1, 3) for x in seen])
    rgb = rgb[rgb.sum(1) > 0]
    assert len(rgb) and np.allclose(rgb[:, 1:], 0, atol=1e-3) and (rgb[:, 0] > 0.5).all(), rgb[:3]


def test_a_report_says_what_the_checks_find_in_the_reference_fit(tmp_path, small_subject, capsys):
    """A subject whose series has a slice's signal dropout: the page scored methods against a reference fitted through
    it without a word (a tractography audit); the fit check's line heads the page and is said on the terminal."""
    import nibabel as nib

    from ImageQualityTransferLib.apps.cli import main

    subj = tmp_path / "subj"
    shutil.copytree(small_subject, subj)
    img = nib.load(subj / "dwi.nii.gz")
    d = np.asarray(img.dataobj).astype(np.float32)
    bvals = np.loadtxt(subj / "dwi.bval")
    v = int(np.flatnonzero(bvals > 100)[3])
    d[:, :, d.shape[2] // 2, v] *= 0.2
    nib.save(nib.Nifti1Image(d, img.affine, img.header), subj / "dwi.nii.gz")
    assert main(["--threads", "1", "report", "-o", str(tmp_path / "r.html"), "--subject", str(subj), "--methods", "cubic",
                 "--no-tracts"]) == 0
    assert f"of volume {v}" in capsys.readouterr().err
    text = (tmp_path / "r.html").read_text()
    assert "Warning: the reference&#x27;s fit: " in text and f"of volume {v}" in text


@pytest.mark.realdata
@pytest.mark.slow
def test_a_report_of_unmasked_tensors_shows_the_brain_not_the_skull_base(tmp_path, capsys):
    """A sagittal dev scan degraded ×1,1,3 and fitted without a mask, reported without one: the estimated brain takes in
    face and neck fits, and its median voxel had put the axial and coronal panels 22 mm lower and 27 mm further forward
    than with the brain mask, through the orbits (a display audit). Its white matter's centre is within 3 voxels."""
    from helpers import SAGITTAL, need_data

    from ImageQualityTransferLib.apps import cli

    dwi = need_data(SAGITTAL) / "dwi.nii.gz"
    lr, mask = tmp_path / "lr.nii.gz", tmp_path / "mask.nii.gz"
    assert cli.main(["degrade", str(dwi), "--factor", "1,1,3", "--style", "unmasked", "-o", str(lr),
                     "--mask-out", str(mask)]) == 0
    centres = {}
    for name, extra in (("masked", ["--mask", str(mask)]), ("unmasked", [])):
        page = tmp_path / f"{name}.html"
        assert cli.main(["report", "-o", str(page), "--input", str(lr), "--factor", "1,1,3", "--methods", "cubic",
                         "--no-tracts", *extra]) == 0  # the slices' centre is read without tracking
        found = re.search(r"its median voxel, \((\d+), (\d+), (\d+)\) in canonical RAS axes", page.read_text())
        centres[name] = np.array([int(v) for v in found.groups()])
    capsys.readouterr()
    assert np.abs(centres["unmasked"] - centres["masked"]).max() <= 3, centres


@pytest.mark.slow
def test_a_noisy_subjects_page_names_the_model_that_ran_and_the_engines_warning(tmp_path, capsys):
    """`iqt report --subject` on a noisy scan: "What ran" names the model trained with added noise that ran, with its
    own SHA256 (an audit: the page gave the clean model's checksum), and the engine's line that says so is on the
    page, as with --input (it had reached the terminal only)."""
    from ImageQualityTransferLib import fileio, methods
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.dmri.phantom import make_phantom

    (tmp_path / "noisy").mkdir()
    fileio.save_dwi(make_phantom(shape=(48, 54, 42), voxel_mm=3.0, n_dirs=12, snr=5), tmp_path / "noisy" / "dwi.nii.gz")
    assert main(["--threads", "1", "report", "--subject", str(tmp_path / "noisy"), "--methods", "biqt", "--no-tracts",
                 "-o", str(tmp_path / "r.html")]) == 0, capsys.readouterr().err
    text = html.unescape((tmp_path / "r.html").read_text())
    twin = methods.get("biqt").for_noisy_inputs((2, 2, 2))
    path, sha = twin.model_record((2, 2, 2))
    assert f"biqt: {Path(path).name} (weights SHA256 {sha[:12]})" in text, text[:3000]
    assert "biqt ran its noise-trained model" in text, text[:3000]
    assert "Warning: the input is noisier than clean scans" in text and "biqt uses its noise-trained model" \
        in text


def test_an_input_page_s_what_ran_names_the_model_trained_with_added_noise(tmp_path, phantom_subject, monkeypatch):
    """`iqt report --input` on a noisy input: "What ran" names the model trained with added noise that ran, as the
    --subject page does (its predictions not handed to the note, every test had still passed: a review)."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.dmri.subject import make_case
    from ImageQualityTransferLib.methods import base

    monkeypatch.setattr(base, "input_noise_index", lambda *a, **k: 0.15)  # read as noisy: the model switches
    fileio.save_tensor(make_case(phantom_subject, 2, style="tight").lr, tmp_path / "lr.nii.gz")
    assert main(["--threads", "1", "report", "-o", str(tmp_path / "r.html"), "--input", str(tmp_path / "lr.nii.gz"),
                 "--methods", "global-linear", "--no-tracts", "--factor", "2"]) == 0
    text = html.unescape((tmp_path / "r.html").read_text())
    assert "global-linear ran its noise-trained model: the input is noisier than clean scans" in text, \
        text[:3000]


def test_a_noisy_inputs_clause_is_said_once_with_each_methods_own_part(recwarn):
    """Every method run on a noisy input says the input's noise clause (methods/base.py `_for_noise`): a noisy subject's
    page had said it once per method, as had "What ran" and the terminal (benchmark and demo too); now once, each
    method's part kept, the ending they share (methods/base.py `_beyond_noise_training`) once after them, other lines
    as they were."""
    import warnings

    from ImageQualityTransferLib.analysis import benchmark
    from ImageQualityTransferLib.core.errors import IQTWarning

    from ImageQualityTransferLib.methods.base import _beyond_noise_training

    head = "the input is noisier than clean scans (noise index 0.121, above 0.075)"
    end = _beyond_noise_training(0.121, f=2)
    assert end.startswith("; near the noisiest inputs trained on (0.12-0.20): ")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("biqt", "rf"):
            warnings.warn(f"{head}: {name} uses its noise-trained model{end}", IQTWarning)
            warnings.warn(f"{name}: the input's brain is thinner than the model's context", IQTWarning)
    notes = report._said_once(caught)
    assert notes == [f"{head}: biqt and rf use their noise-trained models; {end.split('; ')[1]}; read the "
                     "uncertainty maps as lower bounds of the error (docs/inputs.md)",
                     "biqt: the input's brain is thinner than the model's context",
                     "rf: the input's brain is thinner than the model's context"], notes
    with warnings.catch_warnings(record=True) as again:  # `iqt benchmark` and `iqt demo` say them so too
        warnings.simplefilter("always")
        benchmark.say_once(caught, "sub (own)", set())
    assert [str(w.message) for w in again] == [f"sub (own): {n}" for n in notes]
    said = report.ran_note(["cubic", "biqt", "rf"], (2, 2, 2), preds=_ran({"cubic": None, "biqt": 0.3, "rf": 0.3}))
    assert said.count("the input is noisier than clean scans") == 1 and said.count("noise-trained") == 1, said
    assert "each ran its noise-trained model: the input is noisier than clean scans" in said, said


def _ran(indices: dict) -> dict:
    """Predictions as `report.run` and `report.run_input` hand them to `ran_note`: each method's output with the noise
    index it read (None: a method that reads none, cubic) and the noisy-input model's mark where it switched."""
    from ImageQualityTransferLib.core.volume import Volume
    from ImageQualityTransferLib.fileio.model_files import NOISY
    from ImageQualityTransferLib.methods.base import Prediction

    return {name: Prediction(Volume(np.zeros((2, 2, 2, 6), np.float32), np.eye(4), "tensor",
                                    meta={} if index is None else {"noise_index": index, "model_for": NOISY}))
            for name, index in indices.items()}


@pytest.mark.parametrize("index, why", [(0.08, "the input is noisier than clean scans typically are"),
                                        (0.3, "the input is noisier than clean scans.")])
def test_what_ran_words_why_by_the_noise_index_the_methods_read(index, why):
    """"What ran" reads the input's noise index from the predictions, as the terminal's line does (methods/base.py
    `_noisier`): each page's call had passed it on its own, and one without it would have called a 0.08 input, in
    the clean scans' range, noisier than clean scans outright, with no test to see it."""
    said = report.ran_note(["cubic", "biqt"], (2, 2, 2), preds=_ran({"cubic": None, "biqt": index}))
    assert f"biqt ran its noise-trained model: {why}" in said, said


def test_what_ran_of_three_noise_trained_models_is_short_enough_to_read():
    """`iqt report --input --methods biqt,deep-hetero-var1,deep` on a noisy input: "What ran" was 375-389 characters,
    naming the three methods a second time to say why their models ran and deep-hetero-var1 a third time for its Monte
    Carlo samples (an audit of the lines a clinician reads); each method once now, the samples in its brackets."""
    said = report.ran_note(["cubic", "biqt", "deep-hetero-var1", "deep"], (2, 2, 2),
                           preds=_ran({"cubic": None, "biqt": 0.09, "deep-hetero-var1": 0.09, "deep": 0.09}))
    assert len(said) <= 315 and said.count("deep-hetero-var1:") == 1 and said.count("biqt") == 2, (len(said), said)
    assert "weights SHA256 " in said and ", 10 Monte Carlo samples)" in said and said.endswith(
        "each ran its noise-trained model: the input is noisier than clean scans typically are."), said


def test_what_ran_says_no_why_where_no_noise_index_was_read():
    """A noise-trained model that ran with no index read (none in its output's meta) is named without a reason: the
    page had said "noisier than clean scans" outright, the confident words for an index nobody read."""
    preds = _ran({"biqt": 0.3})
    del preds["biqt"].tensor.meta["noise_index"]
    said = report.ran_note(["biqt"], (2, 2, 2), preds=preds)
    assert "biqt ran its noise-trained model." in said and "noisier" not in said, said


def test_a_noisy_inputs_clause_where_only_some_methods_have_noise_trained_models():
    """One method switched to its noise-trained model, one without such a model for the factor (a review checked it by
    hand only: the 2.7 mm AP dev scan x3 --snr 20, biqt and espcn): the clause once, the switched method's part with
    its own ending (of its one model), then the other's part; one line, as `_for_noise` words them. The other's hint
    ("espcn runs one on such inputs") is left out where the line names espcn's noise-trained model already (a line had
    listed five methods' models, then the same five as having one), kept where it does not."""
    from ImageQualityTransferLib.methods.base import UNDERRATES, _beyond_noise_training, noise_clause_once

    head = "the input is noisier than clean scans (noise index 0.150, above 0.075)"
    edge = _beyond_noise_training(0.15, f=2)
    switched = f"espcn uses its noise-trained model{edge}"
    other = "biqt has no noise-trained model for ×3; espcn runs one on such inputs"
    said = noise_clause_once([f"{head}: {switched}", f"{head}: {other}", "biqt: another line"])
    assert said == [f"{head}: {switched}; biqt has no noise-trained model for ×3", "biqt: another line"], said
    # the switched method's own ending (of its one model), then the other's part, in what the product said
    assert edge and said[0].count(head) == 1 and said[0].endswith(f"; {UNDERRATES}; biqt has no noise-trained model "
                                                                  "for ×3"), said
    [kept] = noise_clause_once([f"{head}: {switched.replace('espcn', 'rf')}", f"{head}: {other}"])
    assert kept.endswith(f"; {other}"), kept


def test_a_noisy_inputs_shared_ending_reads_right_beside_a_method_run_with_a_given_model():
    """The ending two noise-trained models share is said once after their methods, of both (it had said "what it was
    trained on" after two, a review's real run); a method run with a given --model (named: "the given model runs" had
    followed another method's part) keeps its own part after it, and the ending is not said twice."""
    from ImageQualityTransferLib.methods.base import _beyond_noise_training, noise_clause_once

    head = "the input is noisier than clean scans (noise index 0.150, above 0.075)"
    edge, beyond = _beyond_noise_training(0.15, f=2), _beyond_noise_training(0.25, f=2)
    noise = "uses its noise-trained model"
    # two switched and one run with a given model: the ending once, plural, after the two it belongs to
    given = [f"{head}: espcn {noise}{edge}", f"{head}: biqt runs the given model, not its noise-trained one",
             f"{head}: rf {noise}{edge}"]
    [said] = noise_clause_once(given)
    assert said == (f"{head}: espcn and rf use their noise-trained models; {edge.split('; ')[1]}; read the "
                    "uncertainty maps as lower bounds of the error (docs/inputs.md); biqt runs the given model instead"), \
        said  # "instead" of its noise-trained one, beside the two that run theirs
    assert said.count("near the noisiest") == 1 and "its uncertainty map" not in said
    [said] = noise_clause_once([f"{head}: espcn {noise}{beyond}", f"{head}: rf {noise}{beyond}"])
    assert said.count("beyond the noise trained on") == 1 and "lower bounds" in said and " uses " not in said, said


@pytest.mark.parametrize("degrees, said_i", [
    (45, "oblique (45.0° from left-right, 45.0° from anterior-posterior)"),
    (40, "oblique (40.0° from left-right, 50.0° from anterior-posterior)"),
    (20, "R (left-right)"),  # within orientation.OBLIQUE_DEGREES: the closest axis
    # the edge decided on the printed tenth of a degree: 30.0001° had been said "oblique (30° from left-right, ...)"
    (30.0001, "R (left-right)"),
    (30.06, "oblique (30.1° from left-right, 59.9° from anterior-posterior)"),
])
def test_per_axis_factors_on_a_turned_scan_say_oblique_where_no_axis_is_near(degrees, said_i):
    """A scan turned 45° about S: its voxel axes i and j lie between R and A, and the page had said "R (left-right)" of
    i all the same (`iqt upsample`'s line, "A"); axis k is still S."""
    from ImageQualityTransferLib.core import orientation

    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    turned = np.array([[2 * c, -2 * s, 0, 0], [2 * s, 2 * c, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])
    assert report.factor_axes((2, 1, 1), turned) == f"2 along voxel axis i, {said_i}"
    assert report.factor_axes((1, 1, 2), turned) == "2 along voxel axis k, S (superior-inferior)"
    assert report.factor_axes is orientation.factor_axes  # upsample's line says it with the same function


def test_the_page_says_how_the_input_was_read_made_and_along_which_anatomical_axis(tmp_path, small_subject,
                                                                                    phantom_subject, capsys):
    """The page says --input's tensor order and its mask (the file name only), --subject's degradation (style and mask
    rule), and the anatomical axis of per-axis factors (an audit: '×1,1,2' of a PSR scan had not said it was L-R)."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.dmri.subject import make_case

    psr = np.array([[0, 0, 2.0, 0], [-2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]])
    assert report.factor_axes((1, 1, 2), psr) == "2 along voxel axis k, R (left-right)"
    assert report.factor_axes((2, 2, 2), psr) == ""
    case = make_case(phantom_subject, 2, style="tight")
    fileio.save_tensor(case.lr, tmp_path / "lr.nii.gz", order="fsl")
    fileio.save_mask(case.lr_mask, tmp_path / "m.nii.gz")
    assert main(["--threads", "1", "report", "-o", str(tmp_path / "in.html"), "--input", str(tmp_path / "lr.nii.gz"),
                 "--tensor-order", "fsl", "--mask", str(tmp_path / "m.nii.gz"), "--methods", "cubic",
                 "--no-tracts"]) == 0, capsys.readouterr().err
    text = html.unescape((tmp_path / "in.html").read_text())
    assert "Input: lr.nii.gz, read as dtifit's 4D order" in text and "(--tensor-order fsl); mask m.nii.gz." in text
    assert f"mask {tmp_path}" not in text
    assert main(["--threads", "1", "report", "-o", str(tmp_path / "s.html"), "--subject", str(small_subject),
                 "--factor", "1,1,2", "--methods", "cubic", "--no-tracts"]) == 0, capsys.readouterr().err
    text = html.unescape((tmp_path / "s.html").read_text())
    assert "Low-res input: the subject's DWIs block-averaged at ×1,1,2 (2 along voxel axis k, S " \
           "(superior-inferior))" in text and "'iqt degrade --style own'" in text and "more than half inside" in text


@pytest.fixture(scope="module")
def page_browser():
    """Headless Chromium driven by Playwright, for the tests that read the page as a browser lays it out."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the Python package) is not installed")
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def _blank_views(columns, *_) -> str:
    """A grey PNG of the width report_figures.fa_views draws for `columns` (6 rows of panels), for the tests that read
    the page, not its drawing."""
    from PIL import Image

    from ImageQualityTransferLib.apps import report_figures

    img = Image.new("RGB", (round((2.1 * len(columns) + 0.6) * report_figures.DPI), 400), "grey")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def laid_out(tmp_path_factory, page_browser):
    """A page of twelve volumes with a warning among its notes, as Chromium lays it out at 1400 px: each note's start
    and background colour, and each figure image's shown width over its own. The FA figures are blank images of the
    width report_figures draws (6 rows of panels; its drawing is not what is read)."""
    shape = (6, 6, 6)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report_page, "fa_views", _blank_views)
        page = report_page.write_report(
            tmp_path_factory.mktemp("wide") / "r.html", "run", [(f"m{i}", _field(shape, 0)) for i in range(12)],
            np.ones(shape, bool), [2.0] * 3, np.diag([-2.0, 2.0, 2.0, 1.0]),
            notes=["What ran: cubic.", "Warning: lr.nii.gz: the input is noisier than clean scans"])
    tab = page_browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        tab.goto(page.as_uri())
        looks = tab.evaluate("""() => [...document.querySelectorAll('body > p')].map(p => [p.textContent.slice(0, 8),
            getComputedStyle(p).backgroundColor])""")
        shown = tab.evaluate("() => [...document.querySelectorAll('figure img')].map(i => i.width / i.naturalWidth)")
    finally:
        tab.close()
    return looks, shown


def test_a_warning_on_the_page_stands_out_from_the_other_notes(laid_out):
    """A report audit on real scans: a noisy or unmasked input's warning was a plain paragraph like the "What ran" and
    "Input" lines around it (`iqt view` shows its notes in an alert); in Chromium it has a background of its own."""
    looks, _ = laid_out
    plain = {bg for text, bg in looks if not text.startswith("Warning")}
    marked = [bg for text, bg in looks if text.startswith("Warning")]
    assert len(marked) == 1 and marked[0] not in plain, looks


def test_a_page_of_many_volumes_draws_each_near_its_size(laid_out):
    """A report audit on real scans: cubic and every shipped method (twelve volumes) were drawn in one FA figure at 44 %
    of its size on a 1400 px page, the volumes' names in 5-point type; in rows of at most six, each image is shown at
    80 % of its size or more."""
    _, shown = laid_out
    assert shown and min(shown) >= 0.8, shown
    assert len(shown) == 2  # the FA figure's two rows: the page has no other figure


@pytest.mark.filterwarnings("ignore:.*whole field of view")  # a made-up field this small reads as unmasked
def test_an_input_page_says_what_its_black_is_not_a_subjects_mask(tmp_path, monkeypatch):
    """A report audit on real scans: the page of `iqt report --input` given no mask called its black "outside the brain
    mask (a subject's own mask may leave out parts of the ventricles, on one side only)"; it says what it is: the
    input's non-zero tensors here."""
    from ImageQualityTransferLib.core.volume import Volume

    data = np.zeros((10, 10, 8, 6), np.float32)
    data[2:-2, 2:-2, 2:-2] = _field((6, 6, 4), 0)  # a masked fit: zeros around the brain
    lr = Volume(data, np.diag([-3.0, 3.0, 3.0, 1.0]), "tensor")
    monkeypatch.setattr(report_page, "fa_views", _blank_views)  # the figure's drawing is not what is read
    text = html.unescape(report.run_input(tmp_path / "r.html", lr, None, 2, ["cubic"], tracts=False).read_text())
    assert "a subject's own mask" not in text and "Black: outside the input's non-zero tensors or implausible" in text
    assert "Slices through the middle of the input's non-zero tensors" in text


def test_a_noisy_inputs_raised_uncertainty_map_says_so_in_its_title(tmp_path, phantom_subject, monkeypatch):
    """A report audit on real scans: biqt's map of a noisy input is raised (x1.12 on the 3 mm ortho scan at SNR 10), as
    the viewer's legend says ("noisy input: SD x1.21"); the page said it only in the warning at its top, not on the
    figure. The map's title says it now, and the caption what it means."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.dmri.subject import make_case
    from ImageQualityTransferLib.methods import base

    drawn = []
    monkeypatch.setattr(base, "input_noise_index", lambda *a, **k: 0.15)  # read as noisy: the map is raised
    monkeypatch.setattr(report_page, "fa_views", _blank_views)  # the drawing is not what is read
    monkeypatch.setattr(report_page, "scalar_views", lambda maps, *a, **k: drawn.append(list(maps)) or _blank_views(maps))
    fileio.save_tensor(make_case(phantom_subject, 2, style="tight").lr, tmp_path / "lr.nii.gz")
    assert main(["--threads", "1", "report", "-o", str(tmp_path / "r.html"), "--input", str(tmp_path / "lr.nii.gz"),
                 "--methods", "biqt", "--no-tracts"]) == 0
    g = base.noisy_std_scale("biqt", 0.15, 2)
    assert g > 1.005 and drawn[0] == [f"biqt, SD ×{g:.2f}"], drawn  # the SD figure; the direction figure's as it was
    assert drawn[1] == ["biqt"], drawn
    assert "SD ×g in a title: that map raised by g for the input's noise" in html.unescape((tmp_path / "r.html").read_text())


def test_a_noise_line_within_the_clean_scans_range_is_not_amber():
    """A review: the clean Trio's report (noise index 0.080, within the clean scans' range; Slicer's legend calls it no
    noisy input) showed its noise line in the amber box of a warning; it is set apart without the amber, and a noisier
    input's line keeps it."""
    from ImageQualityTransferLib.methods.base import NOISIER_TYPICAL

    typical = report_page._note_html(f"Warning: lr.nii.gz: {NOISIER_TYPICAL} (noise index 0.080, above 0.075): ...")
    noisy = report_page._note_html("Warning: lr.nii.gz: the input is noisier than clean scans (noise index 0.132, ...")
    assert typical.startswith('<p class="caution">') and noisy.startswith('<p class="warning">'), (typical, noisy)


def test_report_voxel_size_without_a_model_names_a_coarser_one_that_has(tmp_path, capsys, monkeypatch):
    """`iqt report --input X --voxel-size 1.8` of a 1.8x1.8x6 mm scan chooses factors 1,1,4, where no learned model
    ships: the page is cubic's alone, and the factors' line says --voxel-size 2 (factors 1,1,3) has them (it had only
    said 'iqt train' makes one: a low-field clinic's audit). The page itself is not at stake: not made here."""
    from ImageQualityTransferLib import fileio
    from ImageQualityTransferLib.apps.cli import main
    from ImageQualityTransferLib.core.volume import Volume

    t = np.broadcast_to(tensors.from_matrix(np.diag([1.2e-3, 0.5e-3, 0.4e-3])), (6, 7, 5, 6)).astype(np.float32)
    fileio.save_tensor(Volume(t, np.diag([-1.8, 1.8, 6, 1]), "tensor"), tmp_path / "lr.nii.gz")
    monkeypatch.setattr(report, "run_input", lambda out, *a, **k: out)
    for voxel, said in (("1.8", True), ("2", False)):
        assert main(["report", "-o", str(tmp_path / "r.html"), "--input", str(tmp_path / "lr.nii.gz"), "--no-tracts",
                     "--voxel-size", voxel]) == 0
        out = capsys.readouterr().out
        hint = "--voxel-size 2 gives factors 1,1,3 (1.8x1.8x2 mm voxels), for which models ship"
        assert (hint in out) == said, out


def test_the_figures_leave_out_the_reference_voxels_iqt_evaluate_leaves_out(tmp_path, monkeypatch):
    """An OLS reference's voxels of MD <= 0 (plausible eigenvalues, no tissue's MD) are left out of every score
    (evaluation.evaluation_voxels), and had still been drawn in the page's ground-truth FA panels, error maps and
    reference tracts: the figures now use the same voxels."""
    from types import SimpleNamespace

    from ImageQualityTransferLib.analysis import evaluation, tractography

    shape = (12, 14, 10)
    truth = _field(shape, 0)
    bad = np.zeros(shape, bool)
    bad[5:8, 6:9, 4:6] = True
    truth[bad] = tensors.from_matrix(np.diag([-0.9e-3, 0.2e-3, 0.3e-3]))  # MD -0.13e-3, eigenvalues within the range
    assert tensors.plausible(truth[bad]).all() and not evaluation.evaluation_voxels(truth, bad).any()
    pred = truth + np.float32(1e-4)
    mask = np.zeros(shape, bool)
    mask[2:-2, 2:-2, 2:-2] = True
    drawn, errors = {}, []
    real_fa, real_scalar = report_page.fa_views, report_page.scalar_views

    def fa(columns, *a, **k):
        drawn.update(columns)
        return real_fa(columns, *a, **k)

    def scalar(maps, background, m, *a, **k):
        if a[2].startswith("RMS element error"):
            errors.append(m)
        return real_scalar(maps, background, m, *a, **k)

    monkeypatch.setattr(report_page, "fa_views", fa)
    monkeypatch.setattr(report_page, "scalar_views", scalar)
    # an identity affine: the canonical arrays the figures draw are the arrays given
    report_page.write_report(tmp_path / "r.html", "ols", [("cubic", pred), ("ground truth", truth)], mask, [1, 1, 1],
                             np.eye(4), truth=truth)
    inside = bad & mask
    assert not np.any(drawn["ground truth"][inside]) and np.array_equal(drawn["ground truth"][mask & ~bad], truth[mask & ~bad])
    assert np.array_equal(drawn["cubic"], pred)  # a method's output is drawn as it is
    assert errors and not any(m[inside].any() for m in errors) and all(m[mask & ~bad].all() for m in errors)
    case = SimpleNamespace(truth=truth, hr_mask=mask)
    assert not tractography.reference_voxels(case)[inside].any() and tractography.reference_voxels(case)[mask & ~bad].all()


def test_the_ground_truth_column_is_drawn_on_the_scored_voxels_when_it_holds_a_copy_of_truth(tmp_path, monkeypatch):
    """The page's "ground truth" column is left out where `iqt evaluate` leaves the reference out (MD <= 0) also when
    the caller passes a copy of `truth` there (a float32 copy, a crop): it had been masked only when it was the same
    array object as `truth`."""
    shape = (12, 14, 10)
    truth = _field(shape, 0)
    bad = np.zeros(shape, bool)
    bad[5:8, 6:9, 4:6] = True
    truth[bad] = tensors.from_matrix(np.diag([-0.9e-3, 0.2e-3, 0.3e-3]))  # MD below zero, eigenvalues within the range
    mask = np.zeros(shape, bool)
    mask[2:-2, 2:-2, 2:-2] = True
    drawn = {}
    real_fa = report_page.fa_views

    def fa(columns, *a, **k):
        drawn.update(columns)
        return real_fa(columns, *a, **k)

    monkeypatch.setattr(report_page, "fa_views", fa)
    report_page.write_report(tmp_path / "r.html", "ols", [("cubic", truth + np.float32(1e-4)),
                                                          ("ground truth", truth.astype(np.float32, copy=True))],
                             mask, [1, 1, 1], np.eye(4), truth=truth)
    assert not np.any(drawn["ground truth"][bad & mask])
    assert np.array_equal(drawn["ground truth"][mask & ~bad], truth[mask & ~bad])
