"""Parsers of the in-the-wild databases (KonIQ-10k, CLIVE, BID, SPAQ, FLIVE and its patches,
BIQ2021, AGIQA-3k, AGIQA-1k) and the generic ``data=csv``.

Every fixture is written here in the database's official layout and file format (the authors'
headers, encodings, line ends, .mat cell arrays and Excel sheets, name patterns and sub-folders,
tiny real images), then parsed and set up through the real Hydra config.
"""

from __future__ import annotations

import os

import hydra
import numpy as np
import pandas as pd
import pytest
from openpyxl import Workbook
from PIL import Image
from scipy.io import savemat

from iqa_lab.data.datamodule import BadInputError, IQADataset
from iqa_lab.data.images import BadImageError, load_rgb
from iqa_lab.data.label_files import LabelFileError
from iqa_lab.data.records import RECORD_COLUMNS

# Few images: half train / half test, half of the training contents to validation.
SPLIT = ["protocol.train_fraction=0.5", "protocol.val_fraction=0.5"]
WHOLE = [
    "data.transforms.train.crop_size=null",
    "data.transforms.eval.crop_size=null",
    "data.batch_size=1",
    "data.eval_batch_size=1",
]


def _image(path, seed: int, size=(8, 6), exif_orientation: int | None = None) -> None:
    """A tiny real image with its own pixels (the leakage guard compares pixel hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    kind = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".png": "PNG"}[path.suffix.lower()]
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(path, format=kind, exif=exif)
    else:
        image.save(path, format=kind)


def _datamodule(make_cfg, name: str, data_dir, *overrides):
    cfg = make_cfg(overrides=[f"data={name}", f"data.data_dir={data_dir}", *overrides], tiny=False)
    return hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)


def _setup(make_cfg, name: str, data_dir, *overrides, protocol: str = "random"):
    datamodule = _datamodule(make_cfg, name, data_dir, f"protocol={protocol}", *SPLIT, *overrides)
    datamodule.setup()
    records = datamodule.records
    assert list(records.columns[: len(RECORD_COLUMNS)]) == RECORD_COLUMNS
    assert set(records["split"]) == {"train", "val", "test"}
    assert records.groupby("ref")["split"].nunique().eq(1).all()
    return datamodule


def _check(records: pd.DataFrame, expected: dict, mos_range, db: str) -> None:
    """Each record equals ``expected[image] = {mos_raw, mos_std, set, ref}`` (missing keys: the
    defaults), with ``mos`` the raw score mapped linearly from ``mos_range`` onto [0, 1]."""
    assert sorted(records["image"]) == sorted(expected)
    lo, hi = mos_range
    for image, want in expected.items():
        rows = records[records["image"] == image]
        assert len(rows) == 1, image
        row = rows.iloc[0]
        assert row["mos_raw"] == pytest.approx(want["mos_raw"])
        assert row["mos"] == pytest.approx((want["mos_raw"] - lo) / (hi - lo))
        std = want.get("mos_std")
        assert np.isnan(row["mos_std"]) if std is None else row["mos_std"] == pytest.approx(std), (
            image
        )
        assert row["set"] == want.get("set", "")
        assert row["ref"] == want.get("ref", image)
        assert (row["db"], row["dist_type"]) == (db, "")


def _xlsx(path, rows: list[list], sheet: str = "Sheet1") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook()
    book.active.title = sheet
    for row in rows:
        book.active.append(row)
    book.save(path)


# --------------------------------------------------------------------------------- KonIQ-10k
KONIQ = {  # image_name: (MOS 0..100, SD on 1..5, set)
    "10004473376.jpg": (77.3836206897, 0.527277894494, "training"),
    "10007357496.jpg": (68.7285714286, 0.580003024795, "test"),
    "10007903636.jpg": (78.6285714286, 0.527219618675, "training"),
    "1001254131.jpg": (41.2, 0.7, "validation"),
    "826373.jpg": (3.91176470588, 0.29622973141, "test"),
}
SETS = {"training": "train", "validation": "val", "test": "test"}


def _koniq_sets(root, with_images: bool = True):
    lines = ["image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set"]
    for i, (name, (mos, sd, split)) in enumerate(KONIQ.items()):
        lines.append(
            f"{name},0.0,0.03125,0.46875,0.489583333333,0.0104166666667,96,{mos},{sd},{split}"
        )
        if with_images:
            _image(root / "1024x768" / name, i, size=(16, 12))
    (root / "koniq10k_distributions_sets.csv").write_text("\n".join(lines) + "\n")
    return {
        f"1024x768/{name}": {"mos_raw": mos, "mos_std": sd, "set": SETS[split]}
        for name, (mos, sd, split) in KONIQ.items()
    }


def test_koniq10k_sets_file_official_split(make_cfg, tmp_path):
    expected = _koniq_sets(tmp_path)
    datamodule = _setup(make_cfg, "koniq10k", tmp_path, *WHOLE, protocol="official")
    records = datamodule.records
    _check(records, expected, (0, 100), "koniq10k")
    # protocol=official takes the published sets as they are.
    assert (records["split"] == records["set"]).all()
    assert datamodule.split_sizes() == {"train": 2, "val": 1, "test": 2}
    assert tuple(datamodule.datasets["test"][0]["image"].shape) == (3, 12, 16)


def test_koniq10k_scores_file_and_512x384(make_cfg, tmp_path):
    # The scores file (R export: quoted header and names); MOS there is the 1..5 mean rating,
    # MOS_zscore the 0..100 score. No split in it.
    lines = ['"image_name","c1","c2","c3","c4","c5","c_total","MOS","SD","MOS_zscore"']
    for i, (name, (mos, sd, _)) in enumerate(KONIQ.items()):
        lines.append(
            f'"{name}",0,0.03125,0.46875,0.489583333333,0.0104166666667,96,'
            f"{1 + mos / 25:.4f},{sd},{mos}"
        )
        _image(tmp_path / "512x384" / name, i)
    (tmp_path / "koniq10k_scores_and_distributions.csv").write_text("\n".join(lines) + "\n")
    datamodule = _setup(make_cfg, "koniq10k", tmp_path, "data.image_dir=512x384", *WHOLE)
    _check(
        datamodule.records,
        {f"512x384/{n}": {"mos_raw": m, "mos_std": s} for n, (m, s, _) in KONIQ.items()},
        (0, 100),
        "koniq10k",
    )


def test_koniq10k_prefers_the_sets_file(make_cfg, tmp_path):
    expected = _koniq_sets(tmp_path, with_images=False)
    (tmp_path / "koniq10k_scores_and_distributions.csv").write_text(
        '"image_name","c1","c2","c3","c4","c5","c_total","MOS","SD","MOS_zscore"\n'
        '"other.jpg",0,0,0,1,0,5,4,0.1,80\n'
    )
    records = _datamodule(make_cfg, "koniq10k", tmp_path).load_records()
    _check(records, expected, (0, 100), "koniq10k")


def test_koniq10k_label_errors(make_cfg, tmp_path):
    datamodule = _datamodule(make_cfg, "koniq10k", tmp_path)
    with pytest.raises(LabelFileError, match="koniq10k_distributions_sets.csv"):
        datamodule.load_records()
    (tmp_path / "koniq10k_distributions_sets.csv").write_text(
        "image_name,MOS,SD,set\n1.jpg,50,0.5,train\n"
    )
    with pytest.raises(LabelFileError, match=r"unknown values \['train'\] in column 'set'"):
        datamodule.load_records()


# -------------------------------------------------------------------------------------- CLIVE
CLIVE_IMAGES = {
    "3.bmp": (58.83, 19.2),
    "100.bmp": (32.56107532210109, 19.12472638223644),
    "1000.JPG": (79.1, 13.0),
    "1162.JPG": (3.42, 4.9),
    "512.bmp": (92.43, 8.1),
}


def _clive(root):
    training = [f"t{k}.bmp" for k in range(1, 8)]
    names = training + list(CLIVE_IMAGES)
    mos = [50.0 + k for k in range(7)] + [m for m, _ in CLIVE_IMAGES.values()]
    std = [10.0 + k for k in range(7)] + [s for _, s in CLIVE_IMAGES.values()]
    # As MATLAB stores them: a 1169x1 cell of char arrays, 1x1169 double rows.
    cell = np.empty((len(names), 1), dtype=object)
    cell[:, 0] = names
    (root / "Data").mkdir(parents=True)
    savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": cell})
    savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([mos])})
    savemat(root / "Data" / "AllStdDev_release.mat", {"AllStdDev_release": np.array([std])})
    for i, name in enumerate(training):
        _image(root / "Images" / "trainingImages" / name, 100 + i)
    for i, name in enumerate(CLIVE_IMAGES):
        _image(root / "Images" / name, i, size=(10, 10))
    return training, mos, std


def test_clive_records_without_the_training_images(make_cfg, tmp_path):
    _clive(tmp_path)
    datamodule = _setup(make_cfg, "clive", tmp_path)
    _check(
        datamodule.records,
        {f"Images/{n}": {"mos_raw": m, "mos_std": s} for n, (m, s) in CLIVE_IMAGES.items()},
        (0, 100),
        "clive",
    )
    assert tuple(datamodule.datasets["train"][0]["image"].shape) == (3, 10, 10)


def test_clive_training_images_included_and_std_optional(make_cfg, tmp_path):
    training, mos, std = _clive(tmp_path)
    records = _datamodule(
        make_cfg, "clive", tmp_path, "data.include_training_images=true"
    ).load_records()
    assert records["image"].tolist()[:7] == [f"Images/trainingImages/{t}" for t in training]
    assert records["mos_raw"].tolist() == pytest.approx(mos)
    assert records["mos_std"].tolist() == pytest.approx(std)
    os.remove(tmp_path / "Data" / "AllStdDev_release.mat")
    records = _datamodule(make_cfg, "clive", tmp_path).load_records()
    assert len(records) == 5 and records["mos_std"].isna().all()


def test_clive_label_errors(make_cfg, tmp_path):
    datamodule = _datamodule(make_cfg, "clive", tmp_path)
    with pytest.raises(LabelFileError, match="AllImages_release.mat"):
        datamodule.load_records()
    _clive(tmp_path)
    savemat(tmp_path / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.ones((1, 3))})
    with pytest.raises(LabelFileError, match="lists 12 images but .*has 3 scores"):
        datamodule.load_records()
    savemat(tmp_path / "Data" / "AllMOS_release.mat", {"MOS": np.ones((1, 12))})
    with pytest.raises(
        LabelFileError,
        match=r"AllMOS_release.mat: no variable 'AllMOS_release'; "
        r"found \['MOS'\]",
    ):
        datamodule.load_records()


# ---------------------------------------------------------------------------------------- BID
BID = {1: 3.5333, 2: 1.2667, 3: 4.4, 45: 0.6, 586: 2.9333}


def _bid_images(root):
    for number in BID:
        _image(root / "ImageDatabase" / f"DatabaseImage{number:04d}.JPG", number, size=(12, 9))
    return {f"ImageDatabase/DatabaseImage{n:04d}.JPG": {"mos_raw": g} for n, g in BID.items()}


def test_bid_xlsx(make_cfg, tmp_path):
    expected = _bid_images(tmp_path)
    # The grades sheet, with the empty formatted rows Excel leaves at the end.
    _xlsx(
        tmp_path / "DatabaseGrades.xlsx",
        [
            ["Image Number", "Average Subjective Grade"],
            *[[n, g] for n, g in BID.items()],
            [None, None],
        ],
    )
    datamodule = _setup(
        make_cfg,
        "bid",
        tmp_path,
        "data.transforms.train.crop_size=8",
        "data.transforms.eval.crop_size=8",
    )
    _check(datamodule.records, expected, (0, 5), "bid")
    assert tuple(datamodule.datasets["test"][0]["image"].shape) == (3, 8, 8)


def test_bid_csv_export(make_cfg, tmp_path):
    expected = _bid_images(tmp_path)
    (tmp_path / "DatabaseGrades.csv").write_bytes(
        (
            "Image Number,Average Subjective Grade\r\n"
            + "".join(f"{n},{g}\r\n" for n, g in BID.items())
        ).encode()
    )
    _check(_datamodule(make_cfg, "bid", tmp_path).load_records(), expected, (0, 5), "bid")


def test_bid_label_errors(make_cfg, tmp_path):
    datamodule = _datamodule(make_cfg, "bid", tmp_path)
    with pytest.raises(LabelFileError, match=r"DatabaseGrades.xls.*not found.*DatabaseGrades.csv"):
        datamodule.load_records()
    (tmp_path / "DatabaseGrades.csv").write_text("Image,Grade\n1,3.5\n")
    with pytest.raises(
        LabelFileError,
        match=r"DatabaseGrades.csv: missing column\(s\) "
        r"\['Image Number', 'Average Subjective Grade'\]",
    ):
        datamodule.load_records()
    (tmp_path / "DatabaseGrades.csv").write_text(
        "Image Number,Average Subjective Grade\nDatabaseImage0001,3.5\n"
    )
    with pytest.raises(LabelFileError, match="must hold whole numbers"):
        datamodule.load_records()


# --------------------------------------------------------------------------------------- SPAQ
SPAQ_HEADER = [
    "Image name",
    "MOS",
    "Brightness",
    "Colorfulness",
    "Contrast",
    "Noisiness",
    "Sharpness",
]
SPAQ = {
    "00001.jpg": 48.86,
    "00002.jpg": 62.5,
    "00003.jpg": 77.25,
    "00004.jpg": 2.0,
    "11125.jpg": 96.0,
}


def _spaq(root, csv: bool = False):
    rows = [[name, mos, 47.43, 55.57, 55.71, 37.86, 42.57] for name, mos in SPAQ.items()]
    if csv:  # the CSV export of the sheet: UTF-8 with a BOM
        text = ",".join(SPAQ_HEADER) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / "MOS and Image attribute scores.csv").write_bytes(
            b"\xef\xbb\xbf" + text.encode()
        )
    else:
        _xlsx(root / "Annotations" / "MOS and Image attribute scores.xlsx", [SPAQ_HEADER, *rows])
    for i, name in enumerate(SPAQ):
        # Photos of a phone held upright are stored landscape with an EXIF rotation.
        _image(
            root / "TestImage" / name,
            i,
            size=(64, 48),
            exif_orientation=6 if name == "00002.jpg" else None,
        )
    return {f"TestImage/{n}": {"mos_raw": m} for n, m in SPAQ.items()}


def test_spaq_xlsx_originals(make_cfg, tmp_path):
    expected = _spaq(tmp_path)
    datamodule = _setup(make_cfg, "spaq", tmp_path, "data.resize_short_side=null", *WHOLE)
    _check(datamodule.records, expected, (0, 100), "spaq")
    assert datamodule.data_dir == tmp_path


def test_spaq_csv_with_bom_resized_once_into_the_cache(make_cfg, tmp_path):
    expected = _spaq(tmp_path / "spaq", csv=True)
    datamodule = _setup(
        make_cfg,
        "spaq",
        tmp_path / "spaq",
        "data.resize_short_side=16",
        f"data.cache_dir={tmp_path / 'cache'}",
        *WHOLE,
    )
    _check(datamodule.records, expected, (0, 100), "spaq")
    copies = tmp_path / "cache" / "spaq-16"
    assert datamodule.data_dir == copies
    sizes = {p.name: Image.open(p).size for p in (copies / "TestImage").iterdir()}
    # Short side 16; the EXIF rotation is applied in the copy (the raters saw it upright).
    assert sizes == {**{n: (21, 16) for n in SPAQ}, "00002.jpg": (16, 21)}
    item = next(
        datamodule.datasets[s][i]
        for s in ("train", "val", "test")
        for i in range(len(datamodule.datasets[s]))
    )
    assert item["image"].shape[0] == 3 and min(item["image"].shape[1:]) == 16
    # Reused by the next run: nothing is rewritten.
    stamps = {p.name: p.stat().st_mtime_ns for p in (copies / "TestImage").iterdir()}
    _setup(
        make_cfg,
        "spaq",
        tmp_path / "spaq",
        "data.resize_short_side=16",
        f"data.cache_dir={tmp_path / 'cache'}",
    )
    assert {p.name: p.stat().st_mtime_ns for p in (copies / "TestImage").iterdir()} == stamps
    assert not [p for p in copies.rglob("*") if p.name.endswith(".tmp")]


def test_spaq_unreadable_original_is_screened(make_cfg, tmp_path):
    _spaq(tmp_path / "spaq")
    victim = tmp_path / "spaq" / "TestImage" / "00003.jpg"
    victim.write_bytes(victim.read_bytes()[:40])  # truncated
    overrides = ["data.resize_short_side=16", f"data.cache_dir={tmp_path / 'cache'}"]
    with pytest.raises(BadInputError, match=r"TestImage/00003.jpg"):
        _setup(make_cfg, "spaq", tmp_path / "spaq", *overrides)
    datamodule = _setup(make_cfg, "spaq", tmp_path / "spaq", *overrides, "data.on_bad=skip")
    assert [item["image"] for item in datamodule.bad_inputs] == ["TestImage/00003.jpg"]
    assert len(datamodule.records) == 4


# -------------------------------------------------------------------------------------- FLIVE
FLIVE = {  # name: mos (names carry their sub-folder)
    "blur_dataset/motion0044.jpg": 75.44372347614072,
    "blur_dataset/out_of_focus0059.jpg": 72.82277576657971,
    "voc_emotic_ava/AVA__4210.jpg": 0.0,
    "voc_emotic_ava/EMOTIC__cwpvmtkuw83q2or3za.jpg": 59.64871868,
    "voc_emotic_ava/JPEGImages__2008_000123.jpg": 80.5,
    "voc_emotic_ava/VOC2010_000321.jpg": 66.1,
    "EE371R/rq59.jpg": 65.926928,
}
FLIVE_TEST = [
    "voc_emotic_ava/EMOTIC__cwpvmtkuw83q2or3za.jpg",
    "blur_dataset/motion0044.jpg",
    "voc_emotic_ava/JPEGImages__2008_000123.jpg",
]
LABELS640_HEADER = (
    "mos_patch_1,name_patch,width_patch_1,height_patch_1,top_patch_1,left_patch_1,bottom_patch_1,"
    "right_patch_1,mos_patch_2,width_patch_2,height_patch_2,top_patch_2,left_patch_2,"
    "bottom_patch_2,right_patch_2,mos_patch_3,width_patch_3,height_patch_3,top_patch_3,"
    "left_patch_3,bottom_patch_3,right_patch_3,mos_image,name_image,width_image,height_image,"
    "top_image,left_image,bottom_image,right_image"
)
# Per test picture: three (mos, top, left, bottom, right) patches of its 40x30 picture.
PATCHES = {
    FLIVE_TEST[0]: [
        (79.47386983, 2, 4, 22, 36),
        (70.63982665, 10, 0, 25, 15),
        (58.62773644, 20, 28, 30, 40),
    ],
    FLIVE_TEST[1]: [
        (93.27615713, 0, 0, 30, 40),
        (78.51232431, 5, 5, 15, 20),
        (65.00600263, 12, 30, 18, 38),
    ],
    FLIVE_TEST[2]: [
        (43.8, 1, 1, 11, 31),
        (88.47867486, 14, 2, 29, 39),
        (77.13147567, 0, 20, 9, 40),
    ],
}


def _labels640_row(picture: str) -> str:
    cells = []
    for mos, top, left, bottom, right in PATCHES[picture]:
        cells += [mos, right - left, bottom - top, top, left, bottom, right]
    first = cells[:7]
    rest = cells[7:]
    name = picture.split("/")[1]
    return ",".join(
        map(
            str,
            [
                first[0],
                f"patches/{name}",
                *first[1:],
                *rest,
                FLIVE[picture],
                picture,
                40,
                30,
                0,
                0,
                30,
                40,
            ],
        )
    )


VALID = ["voc_emotic_ava/AVA__4210.jpg", "EE371R/rq59.jpg"]  # is_valid True


def _patch_scores(picture: str) -> list[float]:
    """The three patch MOS of a picture: labels640.csv's for the test pictures, others made up."""
    if picture in PATCHES:
        return [p[0] for p in PATCHES[picture]]
    i = list(FLIVE).index(picture)
    return [round(12.5 + 9.25 * i + 3.125 * k, 4) for k in (1, 2, 3)]


def _labels_patch(root, pictures) -> dict:
    """labels_patch.csv in the published format (``name,mos``; ``patches/<picture file>_patch_<k>
    .jpg``, the files the authors' database_prep notebook writes) with its patch files; returns
    ``{patch: (picture, mos)}``."""
    rows = {}
    for i, picture in enumerate(pictures):
        name = picture.split("/")[-1]
        for k, mos in enumerate(_patch_scores(picture), start=1):
            patch = f"patches/{name}_patch_{k}.jpg"
            rows[patch] = (picture, mos)
            _image(root / patch, 1000 + 3 * i + k, size=(12 + k, 10))
    text = "name,mos\r\n" + "".join(f"{n},{m}\r\n" for n, (_, m) in rows.items())
    (root / "labels_patch.csv").write_bytes(text.encode())
    return rows


def _flive(root, val_file: bool = True):
    # labels_image.csv as published: Windows line ends.
    text = "name,mos\r\n" + "".join(f"{n},{m}\r\n" for n, m in FLIVE.items())
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels_image.csv").write_bytes(text.encode())
    (root / "labels640.csv").write_text(
        LABELS640_HEADER + "\n" + "".join(_labels640_row(p) + "\n" for p in FLIVE_TEST)
    )
    if val_file:  # the name as published in the PaQ-2-PiQ repository
        (root / "labels=640_padded.csv").write_text(
            "name_image,mos_image,is_valid\n"
            "voc_emotic_ava/AVA__4210.jpg,0.0,True\n"
            "voc_emotic_ava/VOC2010_000321.jpg,66.1,False\n"
            "EE371R/rq59.jpg,65.926928,True\n"
        )
    for i, name in enumerate(FLIVE):
        _image(root / name, i, size=(40, 30))
    return _labels_patch(root, FLIVE)


def _official_set(picture: str) -> str:
    return "test" if picture in FLIVE_TEST else "val" if picture in VALID else "train"


def test_flive_pictures_with_the_official_split(make_cfg, tmp_path):
    _flive(tmp_path)
    datamodule = _setup(make_cfg, "flive", tmp_path, protocol="official")
    _check(
        datamodule.records,
        {
            n: {"mos_raw": m, "set": _official_set(n), "ref": n.split("/")[-1]}
            for n, m in FLIVE.items()
        },
        (0, 100),
        "flive",
    )
    assert (datamodule.records["split"] == datamodule.records["set"]).all()


def test_flive_split_files_optional(make_cfg, tmp_path):
    _flive(tmp_path, val_file=False)
    records = _datamodule(make_cfg, "flive", tmp_path).load_records()
    assert records.set_index("image")["set"].to_dict() == {
        n: "test" if n in FLIVE_TEST else "train" for n in FLIVE
    }
    os.remove(tmp_path / "labels640.csv")
    assert (_datamodule(make_cfg, "flive", tmp_path).load_records()["set"] == "").all()


def test_flive_patches_from_labels640_boxes(make_cfg, tmp_path):
    _flive(tmp_path)
    # Every patch of labels640.csv comes from a test picture: split them at random by picture.
    datamodule = _setup(
        make_cfg,
        "flive_patches",
        tmp_path,
        *WHOLE,
        "data.label_file=labels640.csv",
        "data.transforms.train.hflip=false",
    )
    records = datamodule.records
    assert len(records) == 3 * len(FLIVE_TEST)
    assert (records["set"] == "test").all() and (records["db"] == "flive_patches").all()
    assert records.groupby("ref")["split"].nunique().eq(1).all()
    seen = []
    for picture, patches in PATCHES.items():
        rows = records[records["image"] == picture].sort_index()
        assert (rows["ref"] == picture.split("/")[-1]).all()
        assert rows["mos_raw"].tolist() == pytest.approx([p[0] for p in patches])
        assert rows["mos"].tolist() == pytest.approx([p[0] / 100 for p in patches])
        assert rows[["top", "left", "bottom", "right"]].values.tolist() == [
            list(p[1:]) for p in patches
        ]
        whole = load_rgb(tmp_path / picture)
        split = rows["split"].iloc[0]
        dataset = datamodule.datasets[split]
        for index, (_, top, left, bottom, right) in zip(rows.index, patches):
            item = next(dataset[i] for i in range(len(dataset)) if dataset.index[i] == index)
            crop = whole[top:bottom, left:right]
            assert tuple(item["image"].shape) == (3, bottom - top, right - left)
            assert np.allclose(item["image"].permute(1, 2, 0).numpy(), crop / 255.0)
            seen.append(index)
    assert sorted(seen) == sorted(records.index)


def test_flive_patch_box_outside_the_picture(make_cfg, tmp_path):
    _flive(tmp_path)
    records = _datamodule(
        make_cfg, "flive_patches", tmp_path, "data.label_file=labels640.csv"
    ).load_records()
    records.loc[0, "bottom"] = 31  # the picture is 30 high
    dataset = IQADataset(records, tmp_path, transform=lambda image: {"image": image})
    with pytest.raises(BadImageError, match=r"box .* does not fit in the 40x30 image"):
        dataset[0]
    assert dataset[1]["image"].shape == (15, 15, 3)


def test_flive_patches_default_to_every_patch_of_labels_patch_csv(make_cfg, tmp_path):
    """data=flive_patches reads labels_patch.csv: three patches of every picture (~120,000 in
    the release), not the 3 x 1,827 of labels640.csv, each with its picture's file name as ref,
    the pictures' database as content group and its picture's official set."""
    patches = _flive(tmp_path)
    datamodule = _setup(make_cfg, "flive_patches", tmp_path, protocol="official")
    records = datamodule.records
    assert len(records) == 3 * len(FLIVE) == len(patches)
    _check(
        records.drop(columns="split"),
        {
            patch: {
                "mos_raw": mos,
                "set": _official_set(picture),
                "ref": picture.split("/")[-1],
            }
            for patch, (picture, mos) in patches.items()
        },
        (0, 100),
        "flive_patches",
    )
    assert (records["content_db"] == "flive").all()
    assert not {"top", "left", "bottom", "right"} & set(records.columns)
    assert (records["split"] == records["set"]).all()


def _many_flive(root, n: int = 24) -> None:
    """A FLIVE folder of ``n`` generated pictures with labels_image.csv and labels_patch.csv."""
    pictures = {f"voc_emotic_ava/AVA__{1000 + i}.jpg": 2.5 + 4 * i for i in range(n)}
    root.mkdir(parents=True, exist_ok=True)
    text = "name,mos\r\n" + "".join(f"{p},{m}\r\n" for p, m in pictures.items())
    (root / "labels_image.csv").write_bytes(text.encode())
    lines = ["name,mos"]
    for i, picture in enumerate(pictures):
        _image(root / picture, 3000 + i, size=(20, 16))
        for k in (1, 2, 3):
            patch = f"patches/{picture.split('/')[-1]}_patch_{k}.jpg"
            lines.append(f"{patch},{1.5 + 4 * i + k}")
            _image(root / patch, 5000 + 3 * i + k, size=(9, 8))
    (root / "labels_patch.csv").write_text("\n".join(lines) + "\n")


def test_flive_pictures_and_their_patches_land_on_one_side_of_an_imdt_mix(make_cfg, tmp_path):
    """In an IMDT mix of flive + flive_patches a picture's patches never train the model tested
    on that picture, and each database splits as it does alone."""
    _many_flive(tmp_path)
    mixed = _datamodule(
        make_cfg,
        "mixed",
        tmp_path,
        "+data@data.databases.flive=flive",
        "+data@data.databases.flive_patches=flive_patches",
        f"data.databases.flive.data_dir={tmp_path}",
        f"data.databases.flive_patches.data_dir={tmp_path}",
        "+data.imdt={loops: 1, epochs_upper: 1}",
        "protocol=random",
        "protocol.repeat=3",
    )
    mixed.setup()
    records = mixed.records
    assert (records["content_db"] == "flive").all()
    assert records["ref"].str.fullmatch(r"AVA__\d+\.jpg").all()  # the picture's file name
    assert records.groupby("ref")["split"].nunique().eq(1).all()  # picture and patches: one side
    assert set(records["split"]) == {"train", "val", "test"}
    assert (records["db"] == "flive_patches").sum() == 3 * (records["db"] == "flive").sum()
    for db in ("flive", "flive_patches"):
        alone = _datamodule(make_cfg, db, tmp_path, "protocol=random", "protocol.repeat=3")
        alone.setup()
        inside = records[records["db"] == db].set_index("image")["split"]
        assert alone.records.set_index("image")["split"].sort_index().equals(inside.sort_index())


def test_flive_label_errors(make_cfg, tmp_path):
    with pytest.raises(LabelFileError, match="labels_image.csv"):
        _datamodule(make_cfg, "flive", tmp_path).load_records()
    with pytest.raises(LabelFileError, match=r"labels_patch.csv.* data.label_file=labels640.csv"):
        _datamodule(make_cfg, "flive_patches", tmp_path).load_records()
    (tmp_path / "labels_patch.csv").write_text("name,mos\npatches/rq59.jpg,65.9\n")
    with pytest.raises(LabelFileError, match=r"patches/<picture>_patch_<k>.jpg; found"):
        _datamodule(make_cfg, "flive_patches", tmp_path).load_records()
    (tmp_path / "labels_image.csv").write_text("image,score\nEE371R/rq59.jpg,65.9\n")
    with pytest.raises(
        LabelFileError,
        match=r"labels_image.csv: missing column\(s\) "
        r"\['name', 'mos'\]",
    ):
        _datamodule(make_cfg, "flive", tmp_path).load_records()
    (tmp_path / "labels640.csv").write_text("name_image,mos_image\nEE371R/rq59.jpg,65.9\n")
    with pytest.raises(
        LabelFileError,
        match=r"labels640.csv: missing column\(s\) "
        r"\['mos_patch_1', 'top_patch_1'",
    ):
        _datamodule(
            make_cfg, "flive_patches", tmp_path, "data.label_file=labels640.csv"
        ).load_records()


# ------------------------------------------------------------------------------------ BIQ2021
BIQ_TRAIN = {
    "ss01 (402).jpg": 0.834,
    "ss01 (1452).jpg": 0.1981,
    "ss02 (1014).jpg": 0.6,
    "ss03 (7813).jpg": 0.0043,
}
BIQ_TEST = {"ss03 (7805).jpg": 0.7321, "ss01 (151).jpg": 0.1931, "ss02 (78).jpg": 1.0}


def _biq2021(root):
    # Byte for byte in form: the training file with two empty trailing columns and CRLF, the test
    # file without them.
    (root / "Images").mkdir(parents=True)
    (root / "Train (Images and MOS).csv").write_bytes(
        (
            "Image Name,MOS,,\r\n" + "".join(f"{n},{m:.4f},,\r\n" for n, m in BIQ_TRAIN.items())
        ).encode()
    )
    (root / "Test (Images and MOS).csv").write_text(
        "Image Name,MOS\n" + "".join(f"{n},{m:.4f}\n" for n, m in BIQ_TEST.items())
    )
    for i, name in enumerate([*BIQ_TRAIN, *BIQ_TEST]):
        stored = "ss02 (1014).JPG" if name == "ss02 (1014).jpg" else name  # the real quirk
        _image(root / "Images" / stored, i)


def test_biq2021_train_and_test_files(make_cfg, tmp_path):
    _biq2021(tmp_path)
    records = _datamodule(make_cfg, "biq2021", tmp_path).load_records()
    expected = {
        **{f"Images/{n}": {"mos_raw": m, "set": "train"} for n, m in BIQ_TRAIN.items()},
        **{f"Images/{n}": {"mos_raw": m, "set": "test"} for n, m in BIQ_TEST.items()},
    }
    _check(records, expected, (0, 1), "biq2021")
    datamodule = _setup(make_cfg, "biq2021", tmp_path, *WHOLE, protocol="official")
    # The case quirk is resolved by the screening; the official test set is kept.
    assert "Images/ss02 (1014).JPG" in set(datamodule.records["image"])
    assert (datamodule.records["split"] == "test").sum() == len(BIQ_TEST)
    assert datamodule.input_notes[0]["image"] == "Images/ss02 (1014).jpg"


def test_biq2021_images_beside_the_labels_and_one_file(make_cfg, tmp_path):
    (tmp_path / "Train (Images and MOS).csv").write_text("Image Name,MOS,,\nss01 (1).jpg,0.5,,\n")
    records = _datamodule(make_cfg, "biq2021", tmp_path, "data.image_dir=.").load_records()
    assert records[["image", "mos_raw", "set"]].values.tolist() == [["ss01 (1).jpg", 0.5, "train"]]


def test_biq2021_label_errors(make_cfg, tmp_path):
    datamodule = _datamodule(make_cfg, "biq2021", tmp_path)
    with pytest.raises(LabelFileError, match=r"no BIQ2021 label file .*Train \(Images and MOS\)"):
        datamodule.load_records()
    (tmp_path / "Test (Images and MOS).csv").write_text("Image,MOS\nss01 (1).jpg,0.5\n")
    with pytest.raises(
        LabelFileError,
        match=r"Test \(Images and MOS\).csv: missing column\(s\) "
        r"\['Image Name'\]",
    ):
        datamodule.load_records()


# ---------------------------------------------------------------------------------- AGIQA-3k
AGIQA3K = [  # name, prompt, adj1, adj2, style, mos_quality, std_quality, mos_align, std_align
    (
        "AttnGAN_normal_000.jpg",
        "statue of a man",
        "",
        "",
        "",
        0.965602553,
        0.223270101,
        0.40889324,
        0.615607722,
    ),
    (
        "DALLE2_normal_001.jpg",
        "a tray of sushi",
        "",
        "",
        "",
        1.361853219,
        0.645422466,
        0.428796637,
        0.667071153,
    ),
    (
        "midjourney_lowstep_005.jpg",
        "a cat, sitting on a chair",
        "old",
        "",
        "baroque",
        4.488740784,
        0.108312,
        4.2,
        0.2,
    ),
    (
        "sd1.5_highcorr_117.jpg",
        'a "quoted" man lost in space',
        "",
        "",
        "abstract",
        0.0,
        1.452293,
        2.1,
        1.9,
    ),
    ("xl2.2_normal_299.jpg", "a red car", "shiny", "", "", 2.734387, 0.579197, 2.79, 0.7),
]


def _agiqa3k(root, image_dir="AGIQA-3K"):
    frame = pd.DataFrame(
        AGIQA3K,
        columns=[
            "name",
            "prompt",
            "adj1",
            "adj2",
            "style",
            "mos_quality",
            "std_quality",
            "mos_align",
            "std_align",
        ],
    )
    root.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / "data.csv", index=False)  # prompts with commas/quotes are quoted
    for i, row in enumerate(AGIQA3K):
        _image(root / image_dir / row[0], i)


def test_agiqa3k_records(make_cfg, tmp_path):
    _agiqa3k(tmp_path)
    assert (
        (tmp_path / "data.csv")
        .read_text()
        .startswith(
            "name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align\n"
            "AttnGAN_normal_000.jpg,statue of a man,,,,0.965602553,"
        )
    )
    datamodule = _setup(make_cfg, "agiqa3k", tmp_path, *WHOLE)
    _check(
        datamodule.records,
        {f"AGIQA-3K/{r[0]}": {"mos_raw": r[5], "mos_std": r[6]} for r in AGIQA3K},
        (0, 5),
        "agiqa3k",
    )


def test_agiqa3k_alignment_score_and_images_folder(make_cfg, tmp_path):
    _agiqa3k(tmp_path, image_dir="images")
    records = _datamodule(
        make_cfg,
        "agiqa3k",
        tmp_path,
        "data.image_dir=images",
        "data.mos_column=mos_align",
        "data.std_column=std_align",
    ).load_records()
    _check(
        records,
        {f"images/{r[0]}": {"mos_raw": r[7], "mos_std": r[8]} for r in AGIQA3K},
        (0, 5),
        "agiqa3k",
    )


def test_agiqa3k_label_errors(make_cfg, tmp_path):
    datamodule = _datamodule(make_cfg, "agiqa3k", tmp_path)
    with pytest.raises(LabelFileError, match="data.csv"):
        datamodule.load_records()
    (tmp_path / "data.csv").write_text("name,prompt,mos\na.jpg,x,1\n")
    with pytest.raises(
        LabelFileError,
        match=r"data.csv: missing column\(s\) "
        r"\['mos_quality', 'std_quality'\]",
    ):
        datamodule.load_records()


# ---------------------------------------------------------------------------------- AGIQA-1k
AGIQA1K = {
    "dreamStudio_6_2_0_1.jpg": 1.818181818,
    "deepai_9_6_0_1.jpg": 2.818181818,
    "deepai_1_8_1_1.jpg": 2.090909091,
    "dreamStudio_0_0_0_0.jpg": 5.0,
    "deepai_11_14_1_1.jpg": 0.090909091,
}


def test_agiqa1k_records(make_cfg, tmp_path):
    (tmp_path / "AIGC_all.csv").write_bytes(  # Windows line ends, as published
        ("Image,Score\r\n" + "".join(f"{n},{s}\r\n" for n, s in AGIQA1K.items())).encode()
    )
    for i, name in enumerate(AGIQA1K):
        _image(tmp_path / "file" / name, i)
    datamodule = _setup(make_cfg, "agiqa1k", tmp_path, *WHOLE)
    _check(
        datamodule.records,
        {f"file/{n}": {"mos_raw": s} for n, s in AGIQA1K.items()},
        (0, 5),
        "agiqa1k",
    )


def test_agiqa1k_label_errors(make_cfg, tmp_path):
    datamodule = _datamodule(make_cfg, "agiqa1k", tmp_path)
    with pytest.raises(LabelFileError, match="AIGC_all.csv"):
        datamodule.load_records()
    (tmp_path / "AIGC_all.csv").write_text("name,mos\na.jpg,1\n")
    with pytest.raises(
        LabelFileError,
        match=r"AIGC_all.csv: missing column\(s\) "
        r"\['Image', 'Score'\]",
    ):
        datamodule.load_records()


# ------------------------------------------------------------------------------- generic CSV
def test_generic_csv_xlsx_with_dmos_refs_and_sets(make_cfg, tmp_path):
    rows = [["file", "dmos", "sd", "source", "partition"]]
    expected = {}
    for i, (ref, split) in enumerate(
        [
            ("r1", "training"),
            ("r1", "training"),
            ("r2", "testing"),
            ("r3", "training"),
            ("r4", "validation"),
        ]
    ):
        name = f"img_{i}.png"
        dmos = 10.0 + 15 * i
        rows.append([name, dmos, 1.5 + i, ref, split])
        expected[f"pics/{name}"] = {
            "mos_raw": dmos,
            "mos_std": 1.5 + i,
            "ref": ref,
            "set": {"training": "train", "testing": "test", "validation": "val"}[split],
        }
        _image(tmp_path / "pics" / name, i)
    book = Workbook()
    book.active.title = "notes"
    book.create_sheet("scores")
    for row in rows:
        book["scores"].append(row)
    book.save(tmp_path / "scores.xlsx")
    overrides = [
        "data.label_file=scores.xlsx",
        "data.sheet=scores",
        "data.image_column=file",
        "data.mos_column=dmos",
        "data.std_column=sd",
        "data.ref_column=source",
        "data.set_column=partition",
        "data.image_dir=pics",
        "+data.set_values={training: train, testing: test, validation: val}",
        "data.mos_range=[0,100]",
        "data.lower_better=true",
        "data.name=mydb",
        *WHOLE,
    ]
    datamodule = _setup(make_cfg, "csv", tmp_path, *overrides, protocol="official")
    records = datamodule.records
    assert sorted(records["image"]) == sorted(expected)
    for image, want in expected.items():
        row = records[records["image"] == image].iloc[0]
        assert row["mos"] == pytest.approx(1 - want["mos_raw"] / 100)  # DMOS flipped
        assert (row["mos_raw"], row["mos_std"], row["ref"], row["set"], row["db"]) == (
            want["mos_raw"],
            want["mos_std"],
            want["ref"],
            want["set"],
            "mydb",
        )
    assert (records["split"] == records["set"]).all()


def test_generic_csv_plain_and_errors(make_cfg, tmp_path):
    (tmp_path / "labels.csv").write_bytes("image,mos\ncafé.jpg,0.5\nb.jpg,0.25\n".encode("cp1252"))
    records = _datamodule(make_cfg, "csv", tmp_path).load_records()
    assert records[["image", "mos_raw", "mos", "ref", "set"]].values.tolist() == [
        ["café.jpg", 0.5, 0.5, "café.jpg", ""],
        ["b.jpg", 0.25, 0.25, "b.jpg", ""],
    ]
    with pytest.raises(LabelFileError, match=r"labels.csv: missing column\(s\) \['score'\]"):
        _datamodule(make_cfg, "csv", tmp_path, "data.mos_column=score").load_records()
    (tmp_path / "split.csv").write_text("image,mos,part\na.jpg,0.5,holdout\n")
    with pytest.raises(LabelFileError, match=r"column 'part' holds \['holdout'\]"):
        _datamodule(
            make_cfg, "csv", tmp_path, "data.label_file=split.csv", "data.set_column=part"
        ).load_records()
    with pytest.raises(LabelFileError, match="missing.csv"):
        _datamodule(make_cfg, "csv", tmp_path, "data.label_file=missing.csv").load_records()
