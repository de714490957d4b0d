"""results.json counts the images actually scored (``test/n``, ``data.scored_sizes``), not only the
split sizes planned at setup: images that fail to decode late under ``data.on_bad=skip`` are left
out of both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lab.eval import evaluate
from iqa_lab.evaluation import outputs
from tests.planted import corrupt_middle_png, labels, pattern, plant, png_bytes

GOOD = [f"good{i:02d}.png" for i in range(16)]
BROKEN = ["broken0.png", "broken1.png", "broken2.png"]  # pass setup's probe, fail to decode


def test_results_count_the_images_scored_not_the_images_planned(make_cfg, tmp_path):
    folder = tmp_path / "db"
    plant(folder, {name: png_bytes(pattern(seed=i)) for i, name in enumerate(GOOD)})
    plant(folder, {name: corrupt_middle_png(pattern(seed=40 + i)) for i, name in enumerate(BROKEN)})
    table = labels(GOOD + BROKEN).rename(columns={"mos_raw": "mos"})
    table["set"] = ["train"] * 10 + ["test"] * 9  # the broken images in the official test set
    table.to_csv(folder / "labels.csv", index=False)
    cfg = make_cfg(
        "eval",
        [
            "data=csv",
            f"data.data_dir={folder}",
            "data.on_bad=skip",
            "data.near_duplicates.enabled=false",
            "model=classical",
            "model.metric=brisque_live",
            "data.set_column=set",
            "protocol=official",
            "evaluation.resamples=10",
        ],
        tiny=False,
    )
    evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    results = json.loads((out / "results.json").read_text())
    test = pd.read_csv(out / "predictions.csv").query("split == 'test'")
    planted_test = results["data"]["split_sizes"]["test"]
    assert planted_test == 9
    assert sorted(item["image"] for item in results["bad_inputs"]["list"]) == BROKEN
    assert results["metrics"]["test/n"] == len(test) == 6
    assert results["data"]["scored_sizes"] == {**results["data"]["split_sizes"], "test": 6}


def _scored(db: str, head: str, count: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    prediction = rng.uniform(size=count)
    return pd.DataFrame(
        {
            "db": db,
            "head": head,
            "prediction": prediction,
            "mos": prediction + rng.normal(0, 0.1, count),
        }
    )


def test_each_metric_group_says_how_many_images_it_was_computed_on():
    # Databases a (12 images) and b (7), each scored by its own head and by the other's.
    test = pd.concat(
        [
            _scored("a", "a", 12, 0),
            _scored("b", "b", 7, 1),
            _scored("a", "b", 12, 2),
            _scored("b", "a", 7, 3),
        ],
        ignore_index=True,
    )
    metrics = outputs.test_metrics(test, {"resamples": 10})
    assert (metrics["test/n"], metrics["test/a/n"], metrics["test/b/n"]) == (19, 12, 7)
    assert (metrics["test/a/by_b/n"], metrics["test/b/by_a/n"]) == (12, 7)
    # A held-out database (no head of its own): each of the 2 heads scored its 7 images.
    held_out = pd.concat([_scored("c", "a", 7, 4), _scored("c", "b", 7, 5)], ignore_index=True)
    assert outputs.test_metrics(held_out, {"resamples": 10})["test/n"] == 7
