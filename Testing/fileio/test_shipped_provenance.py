"""What the docs say of the shipped forests' provenance holds: their recorded commands no longer remake them bit for
bit (a provenance audit: global-linear_x2's rerun gave 719,863 examples against the recorded 719,859, another SHA256),
and their sidecars record version 0.1.0, no build and no data checksum (docs/measurements.md, "Recorded commands")."""

from __future__ import annotations

import json
from pathlib import Path

from ImageQualityTransferLib.fileio import model_files

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_docs_say_what_the_shipped_forest_sidecars_record():
    sides = [json.loads(p.read_text()) for p in sorted(Path(model_files.MODELS_DIR).glob("*.json"))
             if p.with_suffix(".npz").exists()]
    assert len(sides) == 24  # rf, biqt and global-linear at x2, x3, x1,1,2 and x1,1,3, clean and noisy
    assert {s.get("version") for s in sides} == {"0.1.0"}
    assert not any("build" in s or "data_sha256" in s.get("training", {}) for s in sides)
    text = " ".join((DOCS / "measurements.md").read_text().split())
    assert "record version 0.1.0, no build and no `training.data_sha256`" in text
    assert "no longer remakes it bit for bit" in text
    for doc in ("measurements.md", "conventions.md"):
        said = " ".join((DOCS / doc).read_text().split())
        assert "each shipped forest's recorded command still makes it" not in said, doc  # false since 80585ba


def test_docs_do_not_say_the_cnns_recorded_commands_remake_them():
    """The edge-padding section had said the shipped models' recorded commands still make them: every CNN trained to a
    time limit (--minutes), and the espcn-family ones before 29dcb5d and 80585ba changed the reference fits (a review)."""
    sides = [json.loads(p.read_text()) for p in sorted(Path(model_files.MODELS_DIR).glob("*.json"))
             if p.with_suffix(".pt").exists()]
    assert len(sides) == 35 and all("--minutes" in s["training"]["command"] for s in sides)
    text = " ".join((DOCS / "measurements.md").read_text().split())
    assert "recorded commands still make them" not in text
    assert "each of the 35 CNN sidecars records `--minutes`" in text


def test_docs_say_the_forests_reason_is_partly_traced():
    """The 'Recorded commands' paragraph had said 'The reason found' of a difference traced to two voxels only, for a
    comparison from the ×2 model's commit that does not cover the ×3 model's (a review)."""
    text = " ".join((DOCS / "measurements.md").read_text().split())
    assert "The reason found" not in text
    assert "The reason is partly traced (scratch analysis, not kept" in text
    assert "The ×3 model is not covered: its commit (3c2c6d6" in text
