"""Records put scores on one scale and refuse bad label files; random splits keep their fractions
and seeds; protocols refuse bad settings. (The metrics are tested in test_evaluation_metrics.)"""

import numpy as np
import pandas as pd
import pytest

from iqa_lab.data.protocols import Protocol, assign_splits
from iqa_lab.data.records import make_records, normalise_mos, validate_records


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
    return make_records(
        pd.DataFrame({"image": [f"{i}.jpg" for i in range(n)], "mos_raw": np.linspace(0, 100, n)}),
        "db",
        (0, 100),
    )


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
