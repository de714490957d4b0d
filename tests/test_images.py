"""Bad input, decided once: each kind planted in a generated file and handled by ``load_rgb`` /
``probe_image`` / ``FileResolver`` and by the DataModule's ``data.on_bad`` policy."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from iqa_lab.data.datamodule import BadInputError
from iqa_lab.data.images import BadImageError, FileResolver, load_rgb, probe_image
from iqa_lab.data.label_files import decode_text, read_table
from iqa_lab.models.base import IQAModule
from tests.conftest import SHARED
from tests.planted import (
    FolderDataModule,
    corrupt_middle_png,
    jpeg_bytes,
    labels,
    pattern,
    plant,
    png_bytes,
)

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# --- decoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [2, 100, 1000])
def test_truncated_jpeg_is_refused_naming_the_file(tmp_path, cut):
    data = jpeg_bytes(pattern(240, 320))
    path = write(tmp_path / "cut.jpg", data[:-cut])
    with pytest.raises(BadImageError, match=r"cut\.jpg.*truncated"):
        load_rgb(path)
    with pytest.raises(BadImageError, match=r"cut\.jpg: truncated JPEG"):
        probe_image(path)  # at setup cost: header + the last bytes


def test_png_missing_its_last_chunk_is_refused_although_pil_decodes_it(tmp_path):
    data = png_bytes(pattern())
    path = write(tmp_path / "cut.png", data[:-12])
    with Image.open(path) as image:
        image.load()  # PIL alone would silently accept it
    for check in (load_rgb, probe_image):
        with pytest.raises(BadImageError, match=r"cut\.png: truncated PNG"):
            check(path)


def test_jpeg_with_a_trailer_after_its_end_marker_is_accepted(tmp_path):
    image = pattern()
    path = write(tmp_path / "trailer.jpg", jpeg_bytes(image) + b"\x00" * 10_000)
    assert probe_image(path) is None
    assert load_rgb(path).shape == image.shape


def test_empty_and_non_image_files_are_refused(tmp_path):
    empty = write(tmp_path / "empty.jpg", b"")
    text = write(tmp_path / "notes.jpg", b"this is not an image\n")
    for check in (load_rgb, probe_image):
        with pytest.raises(BadImageError, match=r"empty\.jpg: empty file \(0 bytes\)"):
            check(empty)
        with pytest.raises(BadImageError, match=r"notes\.jpg: not an image PIL can read"):
            check(text)


def test_png_named_jpg_decodes_by_content_and_is_noted(tmp_path):
    image = pattern()
    path = write(tmp_path / "photo.jpg", png_bytes(image))
    np.testing.assert_array_equal(load_rgb(path), image)
    assert probe_image(path) == "wrong extension: PNG content named '.jpg'; decoded by content"
    assert probe_image(write(tmp_path / "photo.PNG", png_bytes(image))) is None


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, :16] = [200, 40, 40]
    image[:, 16:] = [30, 60, 220]
    buffer = io.BytesIO()
    Image.fromarray(image).convert("CMYK").save(buffer, "JPEG", quality=95)
    path = write(tmp_path / "cmyk.jpg", buffer.getvalue())
    assert Image.open(path).mode == "CMYK"
    decoded = load_rgb(path)
    assert decoded.shape == (16, 32, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded[:, 2:14].astype(int) - image[:, 2:14]).max() <= 3
    assert np.abs(decoded[:, 18:30].astype(int) - image[:, 18:30]).max() <= 3


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    grey = np.array([[0, 257, 32896, 65535], [128, 1000, 40000, 65278]], np.uint16)
    path = write(tmp_path / "grey16.png", png_bytes(grey))
    assert Image.open(path).mode == "I;16"
    expected = np.rint(grey / 257.0).astype(np.uint8)  # 0, 1, 128, 255, 0, 4, 156, 254
    np.testing.assert_array_equal(load_rgb(path), np.repeat(expected[..., None], 3, axis=2))


def test_16bit_colour_png_keeps_its_range(tmp_path):
    rgb = np.array([[[65535, 32896, 257], [200, 300, 40000]]], np.uint16)
    path = write(tmp_path / "rgb16.png", png_bytes(rgb))
    np.testing.assert_array_equal(load_rgb(path), [[[255, 128, 1], [0, 1, 156]]])


def test_transparency_is_composited_on_white(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putdata([0, 1])
    palette.save(tmp_path / "palette.png", transparency=0)
    assert Image.open(tmp_path / "palette.png").mode == "P"
    np.testing.assert_array_equal(
        load_rgb(tmp_path / "palette.png"), [[[255, 255, 255], [200, 100, 50]]]
    )

    grey_alpha = np.array([[[100, 0], [100, 255], [100, 128]]], np.uint8)
    Image.fromarray(grey_alpha, "LA").save(tmp_path / "la.png")
    # 100 * 128/255 + 255 * 127/255 = 177.2 for the half-transparent pixel
    np.testing.assert_array_equal(load_rgb(tmp_path / "la.png")[0, :, 0], [255, 100, 177])

    rgba = np.array([[[10, 20, 30, 0], [10, 20, 30, 255]]], np.uint8)
    write(tmp_path / "rgba.png", png_bytes(rgba))
    np.testing.assert_array_equal(
        load_rgb(tmp_path / "rgba.png"), [[[255, 255, 255], [10, 20, 30]]]
    )


def test_exif_orientation_is_applied(tmp_path):
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = [255, 0, 0]
    image[:, 30:] = [0, 0, 255]
    stored = Image.fromarray(image)
    exif = stored.getexif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90 degrees clockwise
    stored.save(tmp_path / "turned.png", exif=exif)
    np.testing.assert_array_equal(load_rgb(tmp_path / "turned.png"), np.rot90(image, k=-1))


def test_decompression_bombs_are_refused_naming_the_setting(tmp_path, monkeypatch):
    path = write(tmp_path / "huge.png", png_bytes(pattern(100, 100)))
    for check in (load_rgb, probe_image):
        with pytest.raises(
            BadImageError,
            match=r"huge\.png: 100x100 = 10,000 pixels exceeds "
            r"data\.max_pixels=5,000",
        ):
            check(path, max_pixels=5000)
    assert load_rgb(path, max_pixels=10_000).shape == (100, 100, 3)
    # PIL's own hard limit (2 x Image.MAX_IMAGE_PIXELS) becomes our error too.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(
        BadImageError,
        match=r"huge\.png: refused as a decompression bomb.*"
        r"data\.max_pixels",
    ):
        load_rgb(path)


# --- finding files -------------------------------------------------------------------------------


def test_case_mismatch_is_resolved_when_unique(tmp_path):
    write(tmp_path / "Images" / "ss02 (1014).JPG", b"x")
    write(tmp_path / "Images" / "B.jpg", b"x")
    write(tmp_path / "Images" / "b.JPG", b"x")
    resolver = FileResolver()
    found = resolver.resolve(tmp_path / "Images" / "ss02 (1014).jpg")
    assert found.path == tmp_path / "Images" / "ss02 (1014).JPG"
    assert found.note == "case-resolved: 'ss02 (1014).jpg' → 'ss02 (1014).JPG'"
    found = resolver.resolve(tmp_path / "images" / "ss02 (1014).jpg")
    assert found.path == tmp_path / "Images" / "ss02 (1014).JPG"
    assert found.note == (
        "case-resolved: 'images' → 'Images', 'ss02 (1014).jpg' → 'ss02 (1014).JPG'"
    )
    ambiguous = resolver.resolve(tmp_path / "Images" / "B.JPG")
    assert ambiguous.path is None and "ambiguous: ['B.jpg', 'b.JPG']" in ambiguous.reason
    assert resolver.resolve(tmp_path / "Images" / "B.jpg").path == tmp_path / "Images" / "B.jpg"
    missing = resolver.resolve(tmp_path / "Images" / "gone.jpg")
    assert missing.path is None and missing.reason.startswith("file not found")
    assert "no folder 'Pics'" in resolver.resolve(tmp_path / "Pics" / "a.jpg").reason


# --- the data.on_bad policy ----------------------------------------------------------------------

GOOD = [f"good{i}.png" for i in range(8)]


def planted_database(folder: Path, bad: dict[str, bytes], extra: list[str] = ()) -> pd.DataFrame:
    plant(folder, {name: png_bytes(pattern(seed=i + 1)) for i, name in enumerate(GOOD)})
    plant(folder, bad)
    return labels(GOOD + sorted(bad) + list(extra))


BAD_FILES = {
    "truncated.jpg": jpeg_bytes(pattern())[:-300],
    "empty.jpg": b"",
    "text.jpg": b"not an image",
    "bomb.png": png_bytes(pattern(120, 120)),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES) + ["missing.jpg"])
def test_each_bad_file_is_refused_under_raise_and_dropped_under_skip(tmp_path, name):
    bad = {name: BAD_FILES[name]} if name in BAD_FILES else {}
    frame = planted_database(tmp_path, bad, extra=[] if bad else [name])
    strict = FolderDataModule(frame, tmp_path, max_pixels=10_000)
    with pytest.raises(
        BadInputError,
        match=rf"(?s)1 of 9 records of 'planted'.*{name}.*"
        r"data\.on_bad=skip",
    ):
        strict.setup()
    lenient = FolderDataModule(frame, tmp_path, max_pixels=10_000, on_bad="skip")
    lenient.setup()
    assert len(lenient.records) == 8 and name not in set(lenient.records["image"])
    assert [item["image"] for item in lenient.bad_inputs] == [name]
    kind = "missing" if name == "missing.jpg" else "unreadable"
    assert lenient.bad_inputs[0]["kind"] == kind


def test_raise_names_every_bad_record_at_once(tmp_path):
    frame = planted_database(tmp_path, BAD_FILES, extra=["missing.jpg"])
    frame = pd.concat([frame, labels(["good0.png", "nan.png"], [0.3, np.nan])], ignore_index=True)
    with pytest.raises(BadInputError) as error:
        FolderDataModule(frame, tmp_path, max_pixels=10_000).setup()
    message = str(error.value)
    assert message.startswith("8 of 15 records of 'planted' cannot be used")
    for name in [*BAD_FILES, "missing.jpg", "nan.png"]:
        assert f"  - {name}: " in message
    assert message.count("  - good0.png: label: image listed twice") == 2


def test_label_problems_are_dropped_and_listed_under_skip(tmp_path):
    frame = planted_database(tmp_path, {})
    frame = pd.concat([frame, labels(["good1.png", "nan.png"], [0.9, np.nan])], ignore_index=True)
    datamodule = FolderDataModule(frame, tmp_path, on_bad="skip")
    datamodule.setup()
    assert sorted(datamodule.records["image"]) == [n for n in GOOD if n != "good1.png"]
    reasons = {(item["image"], item["reason"]) for item in datamodule.bad_inputs}
    assert reasons == {
        (
            "good1.png",
            f"label: image listed twice or more (2 rows, MOS {frame.at[1, 'mos_raw']}, 0.9)",
        ),
        ("nan.png", "label: MOS is not a finite number (mos_raw=nan)"),
    }


def test_case_mismatch_and_wrong_extension_keep_the_record(tmp_path):
    plant(tmp_path, {name: png_bytes(pattern(seed=i + 1)) for i, name in enumerate(GOOD)})
    plant(
        tmp_path,
        {
            "ss02 (1014).JPG": jpeg_bytes(pattern(seed=30)),
            "really_png.jpg": png_bytes(pattern(seed=31)),
        },
    )
    frame = labels(GOOD + ["ss02 (1014).jpg", "really_png.jpg"])
    datamodule = FolderDataModule(frame, tmp_path)
    datamodule.setup()
    assert datamodule.bad_inputs == []
    assert "ss02 (1014).JPG" in set(datamodule.records["image"])
    assert datamodule.input_notes == [
        {
            "image": "ss02 (1014).jpg",
            "note": "case-resolved: 'ss02 (1014).jpg' → 'ss02 (1014).JPG'",
        },
        {
            "image": "really_png.jpg",
            "note": "wrong extension: PNG content named '.jpg'; decoded by content",
        },
    ]


def _all_items(datamodule, split: str) -> list[dict]:
    loader = datamodule._loader(split, shuffle=False)
    batches = []
    for batch in loader:
        batches.append(datamodule.on_before_batch_transfer(batch, 0))
    return batches


def test_decode_failure_found_late_is_dropped_and_listed_under_skip(tmp_path):
    frame = planted_database(tmp_path, {"broken.png": corrupt_middle_png(pattern(seed=40))})
    datamodule = FolderDataModule(
        frame,
        tmp_path,
        on_bad="skip",
        batch_size=1,
        protocol={"name": "random", "train_fraction": 0.5, "val_fraction": 0.5, "seed": 0},
    )
    datamodule.setup()
    assert datamodule.bad_inputs == []  # header and end marker are fine: setup cannot tell
    split = datamodule.records.set_index("image").at["broken.png", "split"]
    batches = _all_items(datamodule, split)
    assert sum(len(b["mos"]) for b in batches) == len(datamodule.datasets[split]) - 1
    assert any(len(b["mos"]) == 0 for b in batches)  # batch size 1: the bad item's batch is empty
    assert all("bad_inputs" not in b for b in batches)
    [item] = datamodule.bad_inputs
    assert item["image"] == "broken.png" and item["kind"] == "decode"
    assert item["split"] == split and "broken.png: cannot be decoded" in item["reason"]
    _all_items(datamodule, split)  # a second epoch lists it once
    assert len(datamodule.bad_inputs) == 1

    strict = FolderDataModule(frame, tmp_path, batch_size=1)
    strict.setup()
    with pytest.raises(BadImageError, match=r"broken\.png: cannot be decoded.*on_bad=raise"):
        _all_items(strict, split)


class MeanColour(IQAModule):
    """A one-parameter model: enough to run Lightning's loops over real batches."""

    def __init__(self):
        super().__init__(optimizer={"_target_": "torch.optim.SGD", "lr": 0.01})
        self.weight = torch.nn.Parameter(torch.ones(()))

    def forward(self, image, *, reference=None, mask=None, heads=None):
        return image.mean(dim=(1, 2, 3)) * self.weight


@pytest.mark.parametrize("seed, split", [(3, "train"), (0, "val"), (1, "test")])
def test_a_run_survives_a_late_decode_failure_and_reports_it(tmp_path, seed, split):
    frame = planted_database(tmp_path, {"broken.png": corrupt_middle_png(pattern(seed=40))})
    datamodule = FolderDataModule(
        frame,
        tmp_path,
        on_bad="skip",
        batch_size=1,
        protocol={"name": "random", "train_fraction": 0.5, "val_fraction": 0.5, "seed": seed},
    )
    datamodule.setup()
    broken = int(datamodule.records.index[datamodule.records["image"] == "broken.png"][0])
    assert datamodule.records.at[broken, "split"] == split  # its batch of one arrives empty
    model = MeanColour()
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    tested = set(model.test_predictions["index"].tolist())
    expected = set(datamodule.records.index[datamodule.records["split"] == "test"]) - {broken}
    assert tested == expected
    assert [item["image"] for item in datamodule.bad_inputs] == ["broken.png"]


# --- label files ---------------------------------------------------------------------------------


def test_cp1252_label_file_is_read(tmp_path, caplog):
    path = tmp_path / "labels.csv"
    path.write_bytes("Bild,MOS\ncafé_über.jpg,3.5\nnaïve.jpg,4\n".encode("cp1252"))
    assert decode_text(path) == "Bild,MOS\ncafé_über.jpg,3.5\nnaïve.jpg,4\n"
    assert "is not UTF-8" in caplog.text and "cp1252" in caplog.text
    assert read_table(path)["Bild"].tolist() == ["café_über.jpg", "naïve.jpg"]


# --- scale ---------------------------------------------------------------------------------------


def test_setup_of_a_10k_image_database_takes_seconds_and_little_memory(tmp_path):
    """Setup (labels, screening, splits, leakage guard, datasets) in a fresh process: its CPU time
    (wall time varies with the machine's load) and the growth of its peak resident memory
    (VmHWM: unlike ru_maxrss it does not inherit the forking parent's peak)."""
    folder = tmp_path / "images"
    folder.mkdir()
    base = np.zeros((8, 8, 3), np.uint8)
    for i in range(10_000):
        base[0, 0] = [i % 256, i // 256, 7]
        (folder / f"img{i:05d}.png").write_bytes(png_bytes(base))
    script = textwrap.dedent(f"""
        import json, resource, time
        from tests.planted import FolderDataModule, labels

        def memory_mb(key):
            with open("/proc/self/status") as f:
                line = next(line for line in f if line.startswith(key + ":"))
            return int(line.split()[1]) / 1024

        def cpu_s():
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return usage.ru_utime + usage.ru_stime

        frame = labels([f"img{{i:05d}}.png" for i in range(10_000)])
        datamodule = FolderDataModule(frame, {str(folder)!r})
        before, cpu, wall = memory_mb("VmRSS"), cpu_s(), time.perf_counter()
        datamodule.setup("fit")
        print(json.dumps({{"cpu_s": cpu_s() - cpu, "wall_s": time.perf_counter() - wall,
                          "growth_mb": memory_mb("VmHWM") - before,
                          "sizes": datamodule.split_sizes()}}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(result)
    assert sum(result["sizes"].values()) == 10_000
    assert result["cpu_s"] < 15
    assert result["growth_mb"] < 200


# --- the shared real images ----------------------------------------------------------------------

BIQ2021 = SHARED / "data" / "BIQ2021"


def test_shared_biq2021_images_decode_including_the_case_quirk():
    if not (BIQ2021 / "Images").is_dir():
        pytest.skip("../shared/data/BIQ2021 is absent")
    frame = read_table(BIQ2021 / "Train (Images and MOS).csv")
    names = frame["Image Name"].tolist()
    assert len(names) == 5000 and "ss02 (1014).jpg" in names
    sample = ["ss02 (1014).jpg"] + names[::250]
    resolver = FileResolver()
    for name in sample:
        found = resolver.resolve(BIQ2021 / "Images" / name)
        assert found.path is not None, found.reason
        assert probe_image(found.path) is None
        image = load_rgb(found.path)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    quirk = resolver.resolve(BIQ2021 / "Images" / "ss02 (1014).jpg")
    assert quirk.path.name == "ss02 (1014).JPG"
    assert quirk.note == "case-resolved: 'ss02 (1014).jpg' → 'ss02 (1014).JPG'"
