"""``FeatureStore``: one row per key, so row numbers stay right when a batch holds two images with
the same content."""

from __future__ import annotations

import numpy as np

from iqa_lab.nn.feature_cache import FeatureStore


def test_feature_store_writes_a_repeated_key_once(tmp_path):
    """Two images with the same content in one batch (a distortion that leaves a greyscale photo
    unchanged): one row, and the rows after it keep their numbers."""
    store = FeatureStore(tmp_path, {"backbone": "test"}, "float32")
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    store.add(["a", "b", "a", "c"], rows)
    store.add(["c", "d"], rows[:2] + 100)
    assert len(store) == 4
    reader = store.reader(in_memory=True)
    assert reader.count == 4 and store.rows_path.stat().st_size == 4 * 3 * 4
    for key, expected in {"a": rows[0], "b": rows[1], "c": rows[3], "d": rows[1] + 100}.items():
        np.testing.assert_array_equal(reader[int(store.rows([key])[0])], expected)
