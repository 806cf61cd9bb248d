#!/usr/bin/env python3
"""Startup of `iqt view`: seconds from starting the command to the first brain view in the browser (headless
Chromium through Playwright: until both halves of the views' area show non-background pixels), with the steps on
the way (address printed, page loaded, the chosen method's result shown), and the import time of trame-slicer.

    PYTHONPATH=ImageQualityTransfer python benchmarks/view_startup.py [--dev] [--method cubic] [--repeats 3]
        [--screenshot Screenshots/view.png]

--dev degrades the real subject ../shared/data/dmri/dev/siemens_prisma_3mm_ortho as `iqt degrade` does; otherwise
the phantom (32x36x28 voxels of 4 mm, 12 directions; with --screenshot the full-size one, 64x72x56 voxels of 2 mm,
for a picture that derives from no real subject) is used. Files go to a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ImageQualityTransfer"
sys.path.insert(0, str(ROOT))

from ImageQualityTransferLib.apps import cli  # noqa: E402

DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dmri" / "dev" / "siemens_prisma_3mm_ortho"
CHROMIUM = os.environ.get("IQT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IQT = "import sys; from ImageQualityTransferLib.apps.cli import main; sys.exit(main())"
IMPORT = ("import time; t = time.perf_counter(); import trame_slicer.core, trame_slicer.rca_view, trame.app; "
          "print(time.perf_counter() - t)")


def import_seconds(repeats: int) -> float:
    """Median seconds to import trame-slicer (and trame) in a fresh interpreter."""
    return statistics.median(float(subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True,
                                                  check=True).stdout.split()[-1]) for _ in range(repeats))


def make_input(folder: Path, dev: bool, full_size: bool = False) -> tuple[Path, Path]:
    dwi = DEV / "dwi.nii.gz"
    if not dev:
        from ImageQualityTransferLib import fileio
        from ImageQualityTransferLib.dmri.phantom import make_phantom

        dwi = folder / "dwi.nii.gz"
        fileio.save_dwi(make_phantom() if full_size else make_phantom(shape=(32, 36, 28), voxel_mm=4.0, n_dirs=12), dwi)
    lr, mask = folder / "lr.nii.gz", folder / "lr_mask.nii.gz"
    assert cli.main(["degrade", str(dwi), "-o", str(lr), "--mask-out", str(mask)]) == 0
    return lr, mask


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def brain_shown(png: bytes) -> bool:
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    h, w = image.shape[:2]
    drawn = image[h // 8: h - h // 8].max(axis=-1) > 12  # the views' background is black; colour FA can be dim
    return bool(drawn[:, : w // 2].mean() > 0.1 and drawn[:, w // 2:].mean() > 0.1)


def one_start(browser, lr: Path, mask: Path, method: str, screenshot: str | None = None) -> dict:
    """Seconds from Popen to: address printed, page loaded, first brain view, the method's result shown; with
    `screenshot`, the views are then saved there as PNG."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", IQT, "view", str(lr), "--mask", str(mask), "--method", method,
                             "--port", str(free_port())], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(line.strip() for line in proc.stdout), daemon=True).start()
    out = {}
    try:
        while not any(line.startswith("iqt view: serving ") for line in lines):
            if proc.poll() is not None:
                raise SystemExit(f"iqt view exited with {proc.returncode}")
            time.sleep(0.02)
        out["address printed"] = time.perf_counter() - t0
        url = next(line for line in lines if line.startswith("iqt view: serving ")).split()[-1]
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(url)
        page.wait_for_selector("#iqt-views")
        out["page loaded"] = time.perf_counter() - t0
        while not brain_shown(page.locator("#iqt-views").screenshot()):
            time.sleep(0.05)
        out["first brain view"] = time.perf_counter() - t0
        while page.inner_text("#iqt-status") not in (f"done: {method}", "error"):
            time.sleep(0.05)
        out[f"{method} shown"] = time.perf_counter() - t0
        if screenshot:
            time.sleep(1.0)  # the result's frame reaches the page after the status line
            page.locator("#iqt-views").screenshot(path=screenshot)
        page.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dev", action="store_true", help="a real dev subject instead of the phantom")
    p.add_argument("--method", default="cubic", help="method shown first (default cubic)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--screenshot", help="save the views of the last run here (PNG; the full-size phantom unless --dev)")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    print(f"trame-slicer import: {import_seconds(args.repeats):.2f} s (median of {args.repeats} fresh interpreters)")
    with tempfile.TemporaryDirectory(prefix="iqt-view-bench-") as tmp:
        lr, mask = make_input(Path(tmp), args.dev, full_size=bool(args.screenshot))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            runs = [one_start(browser, lr, mask, args.method, args.screenshot if k == args.repeats - 1 else None)
                    for k in range(args.repeats)]
            browser.close()
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"{key:>18}: median {statistics.median(values):.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
