"""Image files and a folder database planted by the tests (no downloads): good and bad files of
every kind the bad-input policy handles."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from iqa_lab.data.datamodule import IQADataModule
from iqa_lab.data.records import make_records


def png_bytes(array: np.ndarray) -> bytes:
    """A PNG written by hand: uint8 or uint16, grey (H, W) or RGB / RGBA (H, W, 3|4). PIL cannot
    write 16-bit colour PNGs, and hand-written 8-bit ones are fast enough for 10k files."""
    depth = 16 if array.dtype == np.uint16 else 8
    grey = array.ndim == 2
    height, width = array.shape[:2]
    colour = 0 if grey else {3: 2, 4: 6}[array.shape[2]]
    data = array.astype(">u2" if depth == 16 else np.uint8)
    raw = b"".join(b"\x00" + data[y].tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def pattern(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth RGB test image (JPEG keeps it close)."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    return (base + seed * 13 % 50).clip(0, 255).astype(np.uint8)


def noise_images(folder: Path, names: list[str], height: int, width: int) -> list[Path]:
    """Seeded random-noise images saved under ``folder`` as ``names`` (the suffix picks the
    format), in that order."""
    rng = np.random.default_rng(0)
    paths = [folder / name for name in names]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return paths


def jpeg_bytes(array: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95, **save)
    return buffer.getvalue()


def corrupt_middle_png(array: np.ndarray) -> bytes:
    """A PNG whose header and IEND are intact but whose compressed pixels are broken: it passes
    the setup probe and fails only when decoded."""
    data = bytearray(png_bytes(array))
    start = data.index(b"IDAT") + 4 + 2  # keep the zlib header
    data[start + 10 : start + 60] = b"\x00" * 50
    return bytes(data)


def plant(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)


class FolderDataModule(IQADataModule):
    """A database whose labels are given as a frame (``image``, ``mos_raw`` on 0..1)."""

    def __init__(self, labels: pd.DataFrame, data_dir: Path, **kwargs):
        self.labels = labels
        kwargs.setdefault(
            "protocol", {"name": "random", "train_fraction": 0.5, "val_fraction": 0.5}
        )
        kwargs.setdefault("transforms", {"train": {}, "eval": {}})
        super().__init__(name="planted", data_dir=str(data_dir), **kwargs)

    def load_records(self) -> pd.DataFrame:
        return make_records(self.labels, "planted", (0.0, 1.0))


def labels(images: list[str], mos: list[float] | None = None) -> pd.DataFrame:
    mos = mos if mos is not None else list(np.linspace(0.05, 0.95, len(images)))
    return pd.DataFrame({"image": images, "mos_raw": mos})


def padded_test_batch(
    folder: Path, sizes: list[tuple[int, int]], batch_size: int
) -> tuple[dict, list[tuple[int, int]]]:
    """Plant images of ``sizes`` and load the first test batch with ``data.collate=pad``; returns
    the batch and the (height, width) of each of its images."""
    names = [f"img{i}.png" for i in range(len(sizes))]
    plant(
        folder,
        {n: png_bytes(pattern(h, w, seed=i)) for i, (n, (h, w)) in enumerate(zip(names, sizes))},
    )
    datamodule = FolderDataModule(
        labels(names), folder, collate="pad", batch_size=batch_size, eval_batch_size=batch_size
    )
    datamodule.setup()
    batch = next(iter(datamodule._loader("test", shuffle=False)))
    images = datamodule.records.loc[batch["index"].numpy(), "image"]
    return batch, [sizes[names.index(image)] for image in images]
