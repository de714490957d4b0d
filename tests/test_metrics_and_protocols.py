"""Metrics agree with scipy; the epoch metrics in the model agree with them; splits behave."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from iqa_lab.data.records import make_records, normalise_mos, validate_records
from iqa_lab.evaluation import metrics
from iqa_lab.data.protocols import Protocol, assign_splits
from iqa_lab.models.base import epoch_metrics


def test_correlations_equal_scipy():
    rng = np.random.default_rng(0)
    pred, mos = rng.normal(size=200), rng.normal(size=200)
    mos = mos + pred
    assert metrics.srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos)[0], abs=1e-12)
    assert metrics.krcc(pred, mos) == pytest.approx(stats.kendalltau(pred, mos)[0], abs=1e-12)
    assert metrics.plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos)[0], abs=1e-12)
    assert metrics.rmse(pred, mos) == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)))


def test_constant_input_gives_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="constant"):
        assert np.isnan(metrics.srcc(np.ones(5), np.arange(5)))


def test_logistic_fit_recovers_a_monotone_mapping():
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, 300)
    y = metrics.logistic_4(x, 5.0, 1.0, 0.5, 0.8) + rng.normal(0, 0.05, 300)
    params = metrics.fit_logistic_4(x, y)
    assert params is not None
    assert np.corrcoef(metrics.logistic_4(x, *params), y)[0, 1] > 0.99


def test_epoch_metrics_accumulate_the_whole_epoch_like_scipy():
    """Batch-wise updates of the torchmetrics collection equal scipy over all the data."""
    rng = np.random.default_rng(2)
    pred, mos = rng.uniform(size=96), rng.uniform(size=96)
    mos = 0.6 * pred + 0.4 * mos
    collection = epoch_metrics("val/")
    for start in range(0, 96, 16):
        collection.update(torch.tensor(pred[start:start + 16], dtype=torch.float32),
                          torch.tensor(mos[start:start + 16], dtype=torch.float32))
    values = {k: float(v) for k, v in collection.compute().items()}
    reference = metrics.summary(pred, mos)
    for key in ("srcc", "plcc", "krcc", "rmse"):
        assert values[f"val/{key}"] == pytest.approx(reference[key], abs=1e-5), key
    per_batch = np.mean([metrics.srcc(pred[s:s + 16], mos[s:s + 16]) for s in range(0, 96, 16)])
    assert abs(per_batch - reference["srcc"]) > 1e-4  # what averaging per batch would get wrong


def test_dmos_is_flipped_onto_higher_is_better():
    assert np.allclose(normalise_mos([0, 50, 100], (0, 100), lower_better=True), [1, 0.5, 0])
    assert np.allclose(normalise_mos([1, 3, 5], (1, 5)), [0, 0.5, 1])


def test_records_reject_duplicates_and_missing_scores():
    frame = pd.DataFrame({"image": ["a.jpg", "a.jpg"], "mos_raw": [1.0, 2.0]})
    with pytest.raises(ValueError, match="listed twice"):
        validate_records(make_records(frame, "db", (0, 5)))
    frame = pd.DataFrame({"image": ["a.jpg", "b.jpg"], "mos_raw": [1.0, np.nan]})
    with pytest.raises(ValueError, match="no finite MOS"):
        validate_records(make_records(frame, "db", (0, 5)))


def _authentic(n=100):
    return make_records(pd.DataFrame({"image": [f"{i}.jpg" for i in range(n)],
                                      "mos_raw": np.linspace(0, 100, n)}), "db", (0, 100))


def test_random_split_fractions_and_seeds():
    records = _authentic()
    split = assign_splits(records, Protocol(name="random", seed=0))["split"]
    assert split.value_counts().to_dict() == {"train": 64, "test": 20, "val": 16}
    again = assign_splits(records, Protocol(name="random", seed=0))["split"]
    other = assign_splits(records, Protocol(name="random", seed=0, repeat=1))["split"]
    assert split.equals(again) and not split.equals(other)


def test_protocol_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown protocol"):
        Protocol(name="nonsense")
    with pytest.raises(ValueError, match="train_fraction"):
        Protocol(train_fraction=1.5)
