"""Parsers of the synthetically distorted databases (KADID-10k, TID2013, LIVE, CSIQ, LIVE-MD).

Every fixture is written here in the database's official layout and file format (the authors'
label files byte for byte in form, tiny real images), then parsed through the real Hydra config.
Each database's ``reference`` column (full-reference metrics) must name an existing reference.
"""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from iqa_lab.data.label_files import LabelFileError
from iqa_lab.data.records import RECORD_COLUMNS

# 4 references: content split 0.5 / 0.5 leaves every split at least one reference.
SPLIT = ["protocol.train_fraction=0.5", "protocol.val_fraction=0.5"]


def _image(path, seed: int, size=(8, 6)) -> None:
    """A tiny real image with its own pixels (the leakage guard compares pixel hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _datamodule(make_cfg, name: str, data_dir, *overrides):
    cfg = make_cfg(
        overrides=[f"data={name}", f"data.data_dir={data_dir}", *SPLIT, *overrides], tiny=False
    )
    return hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)


def _setup(make_cfg, name: str, data_dir, *overrides):
    datamodule = _datamodule(make_cfg, name, data_dir, *overrides)
    datamodule.setup()
    records = datamodule.records
    # Content-separated: no reference on two sides.
    assert records.groupby("ref")["split"].nunique().eq(1).all()
    assert set(records["split"]) == {"train", "val", "test"}
    return datamodule


def _row(records: pd.DataFrame, image: str) -> dict:
    rows = records[records["image"] == image]
    assert len(rows) == 1, image
    return rows.iloc[0].to_dict()


def _check_references(datamodule, records: pd.DataFrame | None = None) -> None:
    """Every record's ``reference`` (relative to ``data_dir``, as ``image``) is an existing file,
    spelt as on disk, and ``reference_paths`` (what full-reference metrics load) gives them."""
    records = datamodule.records if records is None else records
    assert records["reference"].notna().all()
    for reference in set(records["reference"]):
        path = datamodule.data_dir / reference
        assert path.is_file() and path.name in {p.name for p in path.parent.iterdir()}, reference
    paths = datamodule.reference_paths(records)
    assert paths.index.equals(records.index)
    assert list(paths) == [datamodule.data_dir / r for r in records["reference"]]
    assert all(Path(p).is_file() for p in paths)


# --------------------------------------------------------------------------------- KADID-10k
KADID_TYPES = {1: "gaussian_blur", 10: "jpeg", 25: "contrast_change"}


def _kadid(root, with_images: bool = True):
    lines = ["dist_img,ref_img,dmos,var"]
    expected = {}
    seed = 0
    for ref in (1, 2, 3, 81):
        if with_images:
            _image(root / "images" / f"I{ref:02d}.png", seed := seed + 1)
        for kind in KADID_TYPES:
            for level in (1, 5):
                name = f"I{ref:02d}_{kind:02d}_{level:02d}.png"
                score = round(4.8 - 0.7 * level + 0.01 * ref + 0.001 * kind, 3)
                var = round(0.1 * level + 0.01 * ref, 3)
                lines.append(f"{name},I{ref:02d}.png,{score},{var}")
                expected[f"images/{name}"] = (score, var, f"I{ref:02d}", KADID_TYPES[kind], level)
                if with_images:
                    _image(root / "images" / name, seed := seed + 1)
    (root / "dmos.csv").write_text("\n".join(lines) + "\n")
    return expected


def test_kadid10k_records(make_cfg, tmp_path):
    expected = _kadid(tmp_path)
    datamodule = _setup(make_cfg, "kadid10k", tmp_path)
    records = datamodule.records
    assert len(records) == 4 * 3 * 2 == len(expected)
    assert list(records.columns[: len(RECORD_COLUMNS)]) == RECORD_COLUMNS
    assert (datamodule.mos_range, datamodule.lower_better) == ((1, 5), False)
    for image, (score, var, ref, kind, level) in expected.items():
        row = _row(records, image)
        assert row["mos_raw"] == pytest.approx(score)
        assert row["mos"] == pytest.approx((score - 1) / 4)  # a MOS: not flipped
        assert row["mos_std"] == pytest.approx(math.sqrt(var))
        assert (row["ref"], row["dist_type"], row["dist_level"], row["db"]) == (
            ref,
            kind,
            level,
            "kadid10k",
        )
    assert records["ref"].nunique() == 4
    assert sum(len(ds) for ds in datamodule.datasets.values()) == 24
    item = datamodule.datasets["train"][0]
    assert tuple(item["image"].shape) == (3, 6, 8)
    # References beside the distorted images: images/I01.png for images/I01_10_05.png.
    assert (records["reference"] == "images/" + records["ref"] + ".png").all()
    assert _row(records, "images/I81_25_05.png")["reference"] == "images/I81.png"
    _check_references(datamodule)


def _direct_psnr(distorted: Path, reference: Path) -> float:
    """PSNR as the original computes it: the MSE over every pixel of all three RGB channels of the
    8-bit images, peak 255."""
    x, y = (
        np.array(Image.open(p).convert("RGB"), dtype=np.float64) for p in (distorted, reference)
    )
    return float(10 * np.log10(255.0**2 / np.mean((x - y) ** 2)))


def test_kadid10k_psnr_through_model_classical(make_cfg, tmp_path):
    _kadid(tmp_path)
    cfg = make_cfg(
        "eval",
        [
            "model=classical",
            "model.metric=psnr",
            "data=kadid10k",
            f"data.data_dir={tmp_path}",
            *SPLIT,
        ],
        tiny=False,
    )
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    datamodule.setup()
    model = hydra.utils.instantiate(cfg.model)
    predictions = model.predict(datamodule)
    test = datamodule.records[datamodule.records["split"] == "test"]
    assert len(predictions) == len(test) > 0
    for row in predictions.itertuples():
        # The reference named independently of the parser: I<nn>_<type>_<level>.png -> I<nn>.png.
        reference = tmp_path / "images" / (Path(row.image).name.split("_")[0] + ".png")
        expected = _direct_psnr(tmp_path / row.image, reference)
        assert np.isfinite(expected)
        assert row.prediction == pytest.approx(expected, rel=1e-12)


def test_kadid10k_label_file_errors(make_cfg, tmp_path):
    datamodule = _datamodule(make_cfg, "kadid10k", tmp_path)
    with pytest.raises(LabelFileError, match="dmos.csv"):
        datamodule.load_records()
    (tmp_path / "dmos.csv").write_text("dist_img,ref_img,mos\nI01_01_01.png,I01.png,4.1\n")
    with pytest.raises(LabelFileError, match=r"dmos\.csv: missing column\(s\) \['dmos', 'var'\]"):
        datamodule.load_records()
    (tmp_path / "dmos.csv").write_text("dist_img,ref_img,dmos,var\nI01-01-01.png,I01.png,4.1,0.2\n")
    with pytest.raises(LabelFileError, match=r"dmos\.csv: 1 dist_img names"):
        datamodule.load_records()


# ---------------------------------------------------------------------------------- TID2013
TID_TYPES = {1: "additive_gaussian_noise", 11: "jpeg2000", 24: "sparse_sampling_and_reconstruction"}


def _tid_name(ref: int, kind: int, level: int) -> str:
    """A name as mos_with_names.txt spells it in the release: mostly lower-case "i01_03_2.bmp",
    "I01_01_1.bmp" for the first image of a reference, "I01_11_1.BMP" for the first JPEG2000
    image, and "i25_..." throughout for the 25th reference (whose reference file is i25.bmp)."""
    if ref == 25 or level != 1 or kind not in (1, 11):
        return f"i{ref:02d}_{kind:02d}_{level}.bmp"
    return f"I{ref:02d}_{kind:02d}_1." + ("BMP" if kind == 11 else "bmp")


# A label whose file is stored under another letter case (the case pyiqa's TID script patches).
TID_CASE_MISMATCH = ("i02_01_1.bmp", "I02_01_1.bmp")


def _tid2013(root, with_std: bool = True):
    mos_lines, std_lines, expected = [], [], {}
    seed = 100
    for ref in (1, 2, 3, 25):
        _image(
            root / "reference_images" / ("i25.bmp" if ref == 25 else f"I{ref:02d}.BMP"),
            seed := seed + 1,
        )
        for kind in TID_TYPES:
            for level in (1, 5):
                name = _tid_name(ref, kind, level)
                if (ref, kind, level) == (2, 1, 1):
                    name = TID_CASE_MISMATCH[0]
                on_disk = TID_CASE_MISMATCH[1] if name == TID_CASE_MISMATCH[0] else name
                mos = round(6.5 - level + 0.01 * ref + 0.001 * kind, 5)
                std = round(0.1 + 0.02 * level, 5)
                mos_lines.append(f"{mos:.5f} {name}")
                std_lines.append(f"{std:.5f}")
                expected[f"distorted_images/{on_disk}"] = (
                    mos,
                    std,
                    f"I{ref:02d}",
                    TID_TYPES[kind],
                    level,
                )
                _image(root / "distorted_images" / on_disk, seed := seed + 1)
    # The release's text files have Windows line ends.
    (root / "mos_with_names.txt").write_bytes(("\r\n".join(mos_lines) + "\r\n").encode())
    if with_std:
        (root / "mos_std.txt").write_bytes(("\r\n".join(std_lines) + "\r\n").encode())
    return expected


def test_tid2013_records(make_cfg, tmp_path):
    expected = _tid2013(tmp_path)
    datamodule = _setup(make_cfg, "tid2013", tmp_path)
    records = datamodule.records
    assert len(records) == 4 * 3 * 2 == len(expected)
    assert (datamodule.mos_range, datamodule.lower_better) == ((0, 9), False)
    for image, (mos, std, ref, kind, level) in expected.items():
        row = _row(records, image)
        assert row["mos_raw"] == pytest.approx(mos)
        assert row["mos"] == pytest.approx(mos / 9)
        assert row["mos_std"] == pytest.approx(std)
        assert (row["ref"], row["dist_type"], row["dist_level"]) == (ref, kind, level)
    # "i25_..." and "I25" are one content; "i01_..." and "I01_..." too.
    assert records.groupby("ref").size().to_dict() == {"I01": 6, "I02": 6, "I03": 6, "I25": 6}
    assert {"distorted_images/I01_11_1.BMP", "distorted_images/i25_01_1.bmp"} <= set(
        records["image"]
    )
    # The label's "i02_01_1.bmp" is the file "I02_01_1.bmp": the record points at the real file
    # and the resolution is noted, not dropped.
    assert datamodule.bad_inputs == []
    assert [note["image"] for note in datamodule.input_notes] == [
        f"distorted_images/{TID_CASE_MISMATCH[0]}"
    ]
    assert "case-resolved" in datamodule.input_notes[0]["note"]
    # References as stored, whatever the case: I01.BMP ... and the release's i25.bmp.
    assert records.groupby("ref")["reference"].unique().map(list).to_dict() == {
        "I01": ["reference_images/I01.BMP"],
        "I02": ["reference_images/I02.BMP"],
        "I03": ["reference_images/I03.BMP"],
        "I25": ["reference_images/i25.bmp"],
    }
    _check_references(datamodule)


def test_tid2013_reference_names_without_the_folder(make_cfg, tmp_path):
    _tid2013(tmp_path)
    datamodule = _datamodule(make_cfg, "tid2013", tmp_path)
    assert (
        _row(datamodule.load_records(), "distorted_images/i25_01_1.bmp")["reference"]
        == "reference_images/i25.bmp"
    )
    for path in (tmp_path / "reference_images").iterdir():
        path.unlink()
    (tmp_path / "reference_images").rmdir()
    # No folder to look in: the canonical name.
    records = datamodule.load_records()
    assert (records["reference"] == "reference_images/" + records["ref"] + ".BMP").all()


def test_tid2013_without_std_and_label_errors(make_cfg, tmp_path):
    _tid2013(tmp_path, with_std=False)
    datamodule = _datamodule(make_cfg, "tid2013", tmp_path)
    records = datamodule.load_records()
    assert len(records) == 24 and records["mos_std"].isna().all()
    (tmp_path / "mos_std.txt").write_text("0.1\n0.2\n")
    with pytest.raises(LabelFileError, match=r"mos_std\.txt: expected 24 lines"):
        datamodule.load_records()
    (tmp_path / "mos_with_names.txt").write_text("5.51429 I01_01_1.bmp\n4.2\n")
    with pytest.raises(LabelFileError, match=r"mos_with_names\.txt: expected lines"):
        datamodule.load_records()
    (tmp_path / "mos_with_names.txt").unlink()
    with pytest.raises(LabelFileError, match=r"mos_with_names\.txt: TID2013 label file"):
        datamodule.load_records()


# ------------------------------------------------------------------------------ LIVE release 2
LIVE_FOLDERS = {"jp2k": 227, "jpeg": 233, "wn": 174, "gblur": 174, "fastfading": 174}
LIVE_REFS = [
    "bikes.bmp",
    "buildings.bmp",
    "caps.bmp",
    "lighthouse2.bmp",
    "parrots.bmp",
    "womanhat.bmp",
]


def _cell(strings) -> np.ndarray:
    """A 1xN MATLAB cell array of strings, as savemat writes an object array."""
    cell = np.empty((1, len(strings)), dtype=object)
    cell[0, :] = list(strings)
    return cell


def _live(root, realigned: bool = True):
    from scipy.io import savemat

    total = sum(LIVE_FOLDERS.values())
    index = np.arange(total)
    refnames = [LIVE_REFS[i % len(LIVE_REFS)] for i in index]
    orgs = (index % 5 == 0).astype(float)  # about the release's 203 of 982
    dmos = np.where(orgs == 1, 0.0, 20 + (index % 70)).astype(float)
    std = 5 + (index % 9) / 10
    if realigned:
        savemat(
            root / "dmos_realigned.mat",
            {"dmos_new": dmos[None], "dmos_std": std[None], "orgs": orgs[None]},
        )
    else:
        savemat(root / "dmos.mat", {"dmos": dmos[None], "orgs": orgs[None]})
    savemat(root / "refnames_all.mat", {"refnames_all": _cell(refnames)})
    for i, ref in enumerate(LIVE_REFS):
        _image(root / "refimgs" / ref, 1000 + i)
    expected, offset = {}, 0
    for folder, count in LIVE_FOLDERS.items():
        lines = []
        for k in reversed(range(1, count + 1)):  # info.txt is not in image order
            i = offset + k - 1
            level = round(0.05 * k, 4)
            lines.append(f"{refnames[i]} img{k}.bmp {level}")
            expected[f"{folder}/img{k}.bmp"] = (
                dmos[i],
                std[i],
                refnames[i][:-4],
                folder,
                level,
                orgs[i] == 1,
            )
            _image(root / folder / f"img{k}.bmp", 2000 + i)
        # gblur's info.txt separates its lines with blank ones, as the release does.
        separator = "\r\n\r\n" if folder == "gblur" else "\r\n"
        (root / folder / "info.txt").write_bytes((separator.join(lines) + "\r\n").encode())
        offset += count
    return expected


def test_live_records(make_cfg, tmp_path):
    expected = _live(tmp_path)
    datamodule = _setup(make_cfg, "live", tmp_path)
    records = datamodule.records
    kept = {k: v for k, v in expected.items() if not v[-1]}
    assert len(records) == len(kept) == 982 - 197
    assert (datamodule.mos_range, datamodule.lower_better) == ((0, 100), True)
    for image, (dmos, std, ref, folder, level, _) in kept.items():
        row = _row(records, image)
        assert row["mos_raw"] == pytest.approx(dmos)
        assert row["mos"] == pytest.approx(1 - dmos / 100)  # DMOS flipped: higher = better
        assert row["mos_std"] == pytest.approx(std)
        assert (row["ref"], row["dist_type"], row["dist_level"]) == (ref, folder, level)
    assert records["dist_type"].value_counts().to_dict() == {
        folder: count - len([k for k in range(count) if (offset + k) % 5 == 0])
        for folder, count, offset in zip(
            LIVE_FOLDERS, LIVE_FOLDERS.values(), np.cumsum([0, *LIVE_FOLDERS.values()])
        )
    }
    # refimgs/<the entry's refnames_all name>.
    assert (records["reference"] == "refimgs/" + records["ref"] + ".bmp").all()
    _check_references(datamodule)


def test_live_dmos_mat_and_references(make_cfg, tmp_path):
    expected = _live(tmp_path, realigned=False)
    datamodule = _datamodule(make_cfg, "live", tmp_path, "data.include_references=true")
    records = datamodule.load_records()
    assert len(records) == 982 and records["mos_std"].isna().all()
    assert _row(records, "jp2k/img1.bmp")["mos_raw"] == 0.0  # orgs == 1: a copy of the reference
    assert _row(records, "fastfading/img174.bmp")["mos_raw"] == expected["fastfading/img174.bmp"][0]
    # A copy of a reference is its own reference; the others refimgs/<name>.
    copies = records["image"].map(lambda image: expected[image][-1])
    assert copies.sum() == 197
    assert (records.loc[copies, "reference"] == records.loc[copies, "image"]).all()
    assert (
        records.loc[~copies, "reference"] == "refimgs/" + records.loc[~copies, "ref"] + ".bmp"
    ).all()
    assert _row(records, "jp2k/img2.bmp")["reference"] == "refimgs/buildings.bmp"
    _check_references(datamodule, records)


def test_live_label_file_errors(make_cfg, tmp_path):
    from scipy.io import savemat

    datamodule = _datamodule(make_cfg, "live", tmp_path)
    with pytest.raises(LabelFileError, match=r"dmos_realigned\.mat', 'dmos\.mat'\] found"):
        datamodule.load_records()
    _live(tmp_path)
    (tmp_path / "gblur" / "info.txt").write_text("bikes.bmp img1.bmp\n")
    with pytest.raises(LabelFileError, match=r"gblur/info\.txt: line 1"):
        datamodule.load_records()
    savemat(
        tmp_path / "dmos_realigned.mat",
        {"dmos_new": np.zeros((1, 981)), "orgs": np.zeros((1, 981))},
    )
    with pytest.raises(LabelFileError, match=r"'dmos_new' has 981 entries; LIVE release 2 has 982"):
        datamodule.load_records()
    (tmp_path / "refnames_all.mat").unlink()
    with pytest.raises(LabelFileError, match=r"refnames_all\.mat: LIVE reference names not found"):
        datamodule.load_records()


# -------------------------------------------------------------------------------------- CSIQ
# dst_type in the sheet -> (dst_idx, folder under dst_imgs, tag in the file name), as released.
CSIQ_TYPES = {
    "noise": (1, "awgn", "AWGN"),
    "jpeg": (2, "jpeg", "JPEG"),
    "jpeg 2000": (3, "jpeg2000", "jpeg2000"),
    "fnoise": (4, "fnoise", "fnoise"),
    "blur": (5, "blur", "BLUR"),
    "contrast": (6, "contrast", "contrast"),
}
CSIQ_HEADER = ["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]


def _csiq_rows():
    rows, expected = [], {}
    for r, ref in enumerate((1600, "aerial_city", "boston", "bridge")):
        for dst_type, (idx, folder, tag) in CSIQ_TYPES.items():
            for level in (1, 2):
                dmos = round(0.1 * level + 0.01 * r + 0.001 * idx, 3)
                std = round(0.05 + 0.01 * r, 3)
                rows.append([ref, idx, dst_type, level, std, dmos])
                expected[f"dst_imgs/{folder}/{ref}.{tag}.{level}.png"] = (
                    dmos,
                    std,
                    str(ref),
                    folder,
                    level,
                )
    return rows, expected


def _csiq(root, csv: bool = False):
    """csiq.DMOS.xlsx as released: the table starts at D4 of sheet all_by_image, which is not the
    workbook's first sheet; or a CSV export of that sheet (same offset)."""
    from openpyxl import Workbook

    rows, expected = _csiq_rows()
    if csv:
        lines = [",,,,,,,,"] * 3 + [",,," + ",".join(CSIQ_HEADER)]
        lines += [",,," + ",".join(str(v) for v in row) for row in rows]
        (root / "csiq.DMOS.csv").write_text("\r\n".join(lines) + "\r\n")
    else:
        book = Workbook()
        book.active.title = "all_by_distortion"
        book["all_by_distortion"]["A1"] = "sorted by distortion"
        sheet = book.create_sheet("all_by_image")
        for i, row in enumerate([CSIQ_HEADER, *rows]):
            for j, value in enumerate(row):
                sheet.cell(row=4 + i, column=4 + j, value=value)
        book.save(root / "csiq.DMOS.xlsx")
    for i, image in enumerate(expected):
        _image(root / image, 3000 + i)
    for i, ref in enumerate({v[2] for v in expected.values()}):
        _image(root / "src_imgs" / f"{ref}.png", 3500 + i)
    return expected


def _check_csiq(records, expected):
    assert len(records) == 4 * 6 * 2 == len(expected)
    for image, (dmos, std, ref, folder, level) in expected.items():
        row = _row(records, image)
        assert row["mos_raw"] == pytest.approx(dmos)
        assert row["mos"] == pytest.approx(1 - dmos)  # DMOS on 0..1 flipped
        assert row["mos_std"] == pytest.approx(std)
        assert (row["ref"], row["dist_type"], row["dist_level"]) == (ref, folder, level)


def test_csiq_xlsx_records(make_cfg, tmp_path):
    expected = _csiq(tmp_path)
    datamodule = _setup(make_cfg, "csiq", tmp_path)
    assert (datamodule.mos_range, datamodule.lower_better) == ((0, 1), True)
    _check_csiq(datamodule.records, expected)
    assert "dst_imgs/awgn/1600.AWGN.2.png" in set(datamodule.records["image"])
    assert (
        _row(datamodule.records, "dst_imgs/awgn/1600.AWGN.2.png")["reference"]
        == "src_imgs/1600.png"
    )
    _check_references(datamodule)


def test_csiq_csv_export(make_cfg, tmp_path):
    expected = _csiq(tmp_path, csv=True)
    datamodule = _datamodule(make_cfg, "csiq", tmp_path, "data.label_file=csiq.DMOS.csv")
    records = datamodule.load_records()
    _check_csiq(records, expected)
    assert (records["reference"] == "src_imgs/" + records["ref"] + ".png").all()
    _check_references(datamodule, records)


def test_csiq_label_file_errors(make_cfg, tmp_path):
    datamodule = _datamodule(make_cfg, "csiq", tmp_path)
    with pytest.raises(LabelFileError, match=r"csiq\.DMOS\.xlsx: CSIQ label file"):
        datamodule.load_records()
    _csiq(tmp_path)
    wrong_sheet = _datamodule(make_cfg, "csiq", tmp_path, "data.sheet=by_image")
    with pytest.raises(LabelFileError, match=r"csiq\.DMOS\.xlsx: no sheet 'by_image'"):
        wrong_sheet.load_records()
    (tmp_path / "csiq.DMOS.csv").write_text("image,dst_type,dst_lev,dmos\n1600,noise,1,0.1\n")
    as_csv = _datamodule(make_cfg, "csiq", tmp_path, "data.label_file=csiq.DMOS.csv")
    with pytest.raises(
        LabelFileError,
        match=r"csiq\.DMOS\.csv: missing column\(s\) "
        r"\['dst_idx', 'dmos_std'\]",
    ):
        as_csv.load_records()
    (tmp_path / "csiq.DMOS.csv").write_text(
        ",".join(CSIQ_HEADER) + "\n1600,1,gaussian,1,0.01,0.1\n"
    )
    with pytest.raises(LabelFileError, match=r"unknown dst_type \['gaussian'\]"):
        as_csv.load_records()


# ----------------------------------------------------------------------------------- LIVE-MD
LIVEMD_PARTS = {"Part 1": ("blurjpeg", "jpeg"), "Part 2": ("blurnoise", "noise")}
LIVEMD_REFS = ("babygirl", "bikerace", "cows", "palace2")


def _livemd(root):
    from scipy.io import savemat

    expected, seed = {}, 4000
    for p, (part, (folder, second)) in enumerate(LIVEMD_PARTS.items()):
        names, scores = [], []
        for r, ref in enumerate(LIVEMD_REFS):
            _image(root / part / folder / f"{ref}.bmp", seed := seed + 1)
            for stages, kind, level in (
                (f"blur{p + 1}", "blur", p + 1),
                (f"{second}2", second, 2),
                (f"blur1_{second}3", f"blur+{second}", 4),
            ):
                name = f"{ref}_{stages}.bmp"
                score = round(10 + 5 * level + r + 0.1 * p, 4)
                names.append(name)
                scores.append(score)
                expected[f"{part}/{folder}/{name}"] = (score, ref, kind, level)
                _image(root / part / folder / name, seed := seed + 1)
        # As MATLAB stores them: distimgs an N x 1 cell, DMOSscores a 1 x N row.
        cell = np.empty((len(names), 1), dtype=object)
        cell[:, 0] = names
        savemat(
            root / part / "Imagelists.mat",
            {"distimgs": cell, "refimgs": _cell([f"{ref}.bmp" for ref in LIVEMD_REFS]).T},
        )
        savemat(root / part / "Scores.mat", {"DMOSscores": np.array(scores)[None]})
    return expected


def test_livemd_records(make_cfg, tmp_path):
    expected = _livemd(tmp_path)
    datamodule = _setup(make_cfg, "livemd", tmp_path)
    records = datamodule.records
    assert len(records) == 2 * 4 * 3 == len(expected)
    assert (datamodule.mos_range, datamodule.lower_better) == ((0, 100), True)
    for image, (score, ref, kind, level) in expected.items():
        row = _row(records, image)
        assert row["mos_raw"] == pytest.approx(score)
        assert row["mos"] == pytest.approx(1 - score / 100)
        assert np.isnan(row["mos_std"])
        assert (row["ref"], row["dist_type"], row["dist_level"]) == (ref, kind, level)
    # One content across both parts: 6 images per reference, all on one side.
    assert records.groupby("ref").size().to_dict() == {ref: 6 for ref in LIVEMD_REFS}
    # The reference beside the image, in its own part's folder.
    assert (
        records["reference"]
        == records["image"].map(lambda image: Path(image).parent).map(Path.as_posix)
        + "/"
        + records["ref"]
        + ".bmp"
    ).all()
    assert (
        _row(records, "Part 2/blurnoise/cows_blur1_noise3.bmp")["reference"]
        == "Part 2/blurnoise/cows.bmp"
    )
    _check_references(datamodule)


def test_livemd_label_file_errors(make_cfg, tmp_path):
    from scipy.io import savemat

    datamodule = _datamodule(make_cfg, "livemd", tmp_path)
    with pytest.raises(
        LabelFileError,
        match=r"Part 1/Imagelists\.mat: MATLAB file with "
        r"'distimgs' not found",
    ):
        datamodule.load_records()
    _livemd(tmp_path)
    savemat(tmp_path / "Part 2" / "Scores.mat", {"DMOSscores": np.zeros((1, 11))})
    with pytest.raises(LabelFileError, match=r"Part 2/Scores\.mat: 11 DMOSscores for the 12"):
        datamodule.load_records()
    savemat(tmp_path / "Part 2" / "Scores.mat", {"MOSscores": np.zeros((1, 12))})
    with pytest.raises(LabelFileError, match=r"Part 2/Scores\.mat: no variable 'DMOSscores'"):
        datamodule.load_records()
