"""``python -m iqa_lab.data.check data=<name> data.data_dir=…``: is this database usable?

Parses the label files with the database's own parser, screens every record as setup does
(labels, file present or case-resolved, header, size, end marker), then decodes every image once
and hashes its pixels. Prints a table — found / missing / unreadable / case-resolved / wrong
extension / duplicated (identical decoded pixels) / near-duplicate pairs (``data.near_duplicates``)
/ label problems (identical pixels with different MOS among them) / listed again with
``data.duplicate_labels=first`` (first row kept) / usable — with the MOS range and a text
histogram, then the offending items and the near-duplicate pairs with their MOS and how well
twins' MOS agree. Near-duplicates do not make a database unusable: runs keep each pair on one
side of a split (``data.near_duplicates``).

A light process: the check reads a database through its Lightning-free class (``DATABASE_OF``:
``database.IQADatabase`` for every plain database, ``SPAQDatabase`` for SPAQ), so it loads neither
torch nor Lightning; ``data=synthetic`` (built with torch) and ``data=mixed`` instantiate their
DataModule as configured.

Exit status: 0 when the database is usable, 1 when it is not — no usable record, or any record
that ``data.on_bad=raise`` (the default) would refuse at setup or while decoding — and 2 when the
label files cannot be parsed at all.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from iqa_lab.cli import one_line, one_line_errors, run_command
from iqa_lab.config_checks import check_config
from iqa_lab.data.database import LOADER_KEYS, IQADatabase, with_box_ids
from iqa_lab.data.images import BadImageError
from iqa_lab.data.leakage import pixel_hash
from iqa_lab.data.records import check_schema, conflicting_duplicates
from iqa_lab.errors import ConfigError
from iqa_lab.progress import track

USABLE, UNUSABLE, UNPARSABLE = 0, 1, 2

# The DataModule a data config names -> the class that reads its files without torch or Lightning.
DATABASE_OF = {
    "iqa_lab.data.datamodule.IQADataModule": "iqa_lab.data.database.IQADatabase",
    "iqa_lab.data.spaq_datamodule.SPAQDataModule": "iqa_lab.data.databases.spaq.SPAQDatabase",
}


@dataclass
class CheckReport:
    """What ``check_database`` found; ``bad`` items are ``{"image", "kind", "reason"}`` with kind
    label, missing, unreadable (setup probe) or decode (full decode)."""

    name: str
    data_dir: str
    on_bad: str
    records: int
    bad: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)
    # Later rows of an image listed twice, dropped under data.duplicate_labels=first
    later_listings: list[dict] = field(default_factory=list)
    found: int = 0  # records whose file is present (label problems of the label file aside)
    duplicates: list[list[str]] = field(default_factory=list)  # images with identical pixels
    # Near-duplicate pairs: db, image_a, image_b, correlation, psnr, and both images' mos_raw_a /
    # mos_raw_b (as published) and mos_a / mos_b (normalised)
    near_duplicates: list[dict] = field(default_factory=list)
    mos_raw: np.ndarray = field(default_factory=lambda: np.empty(0))
    mos: np.ndarray = field(default_factory=lambda: np.empty(0))

    def count(self, kind: str) -> int:
        return sum(item["kind"] == kind for item in self.bad)

    @property
    def case_resolved(self) -> list[dict]:
        return [n for n in self.notes if n["note"].startswith("case-resolved")]

    @property
    def wrong_extension(self) -> list[dict]:
        return [n for n in self.notes if n["note"].startswith("wrong extension")]

    @property
    def usable(self) -> int:
        return self.records - len(self.bad) - len(self.later_listings)

    @property
    def verdict(self) -> tuple[int, str]:
        if self.usable == 0:
            return UNUSABLE, "UNUSABLE: no usable record"
        if self.bad and self.on_bad == "raise":
            return UNUSABLE, (
                f"UNUSABLE under data.on_bad=raise: {len(self.bad)} bad records "
                f"would stop a run; fix them, or train with data.on_bad=skip to "
                f"drop them ({self.usable} records left)"
            )
        if self.bad:
            return USABLE, (
                f"usable with data.on_bad=skip: {self.usable} records "
                f"({len(self.bad)} dropped and listed in results.json)"
            )
        return USABLE, f"usable: {self.usable} records"


def _hash_or_error(path) -> tuple[str | None, str | None]:
    """(``leakage.pixel_hash`` of the file, None) or (None, why it cannot be decoded)."""
    try:
        return pixel_hash(path), None
    except BadImageError as err:
        return None, str(err)


def database_config(data: DictConfig) -> DictConfig:
    """``data`` aimed at the Lightning-free class of its DataModule (``DATABASE_OF``) without the
    loader keys; a DataModule without one (synthetic, mixed) is kept as configured."""
    target = data.get("_target_")
    if target not in DATABASE_OF:
        return data
    keys = OmegaConf.to_container(data, resolve=True)
    light = {key: value for key, value in keys.items() if key not in LOADER_KEYS}
    return OmegaConf.create({**light, "_target_": DATABASE_OF[target]})


def check_database(
    datamodule: IQADatabase, decode: bool = True, workers: int | None = None
) -> CheckReport:
    """Screen every record of ``datamodule`` (as its setup would) and, with ``decode``, decode
    every image once to find unreadable and identical images."""
    records = check_schema(datamodule.load_records().reset_index(drop=True))
    total = len(records)
    records, later = datamodule.keep_first_listings(records)
    bad, notes, resolved = datamodule.find_bad_inputs(records)
    records.loc[resolved.index, "image"] = resolved
    report = CheckReport(
        datamodule.name, str(datamodule.data_dir), datamodule.on_bad, total, notes=notes
    )
    report.later_listings = later
    report.found = len(records) - report.count("label") - report.count("missing")
    report.bad = [{k: v for k, v in item.items() if k != "index"} for item in bad]
    good = records.drop(index=[item["index"] for item in bad])
    if decode and len(good):
        # One decode per file: records naming one file (e.g. FLIVE's patches, boxes of one
        # picture) share its result and are not duplicates of each other.
        paths = pd.Series(list(datamodule.image_paths(good)), index=good.index).map(str)
        unique = list(dict.fromkeys(paths))
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            hashed = pool.map(_hash_or_error, unique)
            results = dict(
                zip(unique, list(track(hashed, "decoding and hashing", len(unique), "images")))
            )
        groups: dict[str, list[str]] = defaultdict(list)
        failed = []
        seen = set()
        for index, image, path in zip(good.index, good["image"], paths):
            digest, error = results[path]
            if error is not None:
                report.bad.append({"image": image, "kind": "decode", "reason": error})
                failed.append(index)
            elif path not in seen:
                groups[digest].append(image)
            seen.add(path)
        report.duplicates = [images for images in groups.values() if len(images) > 1]
        good = good.drop(index=failed)
        hashes = paths[good.index].map(lambda path: results[path][0])
        conflicts = conflicting_duplicates(with_box_ids(good), hashes, paths[good.index])
        report.bad.extend(
            {"image": item["image"], "kind": "label", "reason": item["reason"]}
            for item in conflicts
        )
        good = good.drop(index=[item["index"] for item in conflicts])
        report.near_duplicates = near_duplicate_pairs(datamodule, good)
    report.mos_raw = good["mos_raw"].to_numpy(dtype=float)
    report.mos = good["mos"].to_numpy(dtype=float)
    return report


def near_duplicate_pairs(datamodule: IQADatabase, records: pd.DataFrame) -> list[dict]:
    """The near-duplicate pairs among ``records`` (``IQADataModule.find_near_duplicates``) with
    both images' published MOS."""
    pairs = datamodule.find_near_duplicates(records)
    mos = records.drop_duplicates(["db", "image"]).set_index(["db", "image"])
    return [
        {
            **pair,
            **{
                f"{column}_{side}": float(mos.at[(pair["db"], pair[f"image_{side}"]), column])
                for column in ("mos_raw", "mos")
                for side in "ab"
            },
        }
        for pair in pairs.to_dict("records")
    ]


def twin_agreement(pairs: list[dict]) -> str:
    """How well the MOS of near-duplicate twins agree: SRCC over the pairs and the median
    absolute difference of their normalised MOS."""
    from scipy.stats import spearmanr  # only here: scipy.stats takes a while to import

    a = np.array([p["mos_a"] for p in pairs])
    b = np.array([p["mos_b"] for p in pairs])
    srcc = spearmanr(a, b).statistic if len(pairs) > 2 else float("nan")
    return (
        f"MOS of near-duplicate twins: SRCC {srcc:.3f} over {len(pairs)} pairs, median "
        f"|ΔMOS| {np.median(np.abs(a - b)):.4f} (normalised to [0, 1])"
    )


def histogram_lines(values: np.ndarray, bins: int = 10, width: int = 40) -> list[str]:
    """A text histogram: one line per bin, ``[low, high)  count  bar``."""
    if not len(values):
        return []
    counts, edges = np.histogram(values, bins=bins)
    peak = max(counts.max(), 1)
    return [
        f"[{lo:9.4g}, {hi:9.4g}{']' if i == bins - 1 else ')'} {count:7d} "
        f"{'█' * int(round(width * count / peak))}"
        for i, (lo, hi, count) in enumerate(zip(edges[:-1], edges[1:], counts))
    ]


def render(report: CheckReport, console: Console, show: int = 20) -> None:
    """Print the summary table, the MOS histogram and up to ``show`` items per problem."""
    table = Table(title=f"data.check: {report.name} ({report.data_dir})")
    table.add_column("check")
    table.add_column("count", justify="right")
    duplicated = sum(len(group) for group in report.duplicates)
    rows = [
        ("records in the label files", report.records),
        ("found (files present)", report.found),
        ("  of which case-resolved", len(report.case_resolved)),
        ("  of which wrong extension (decoded by content)", len(report.wrong_extension)),
        ("missing", report.count("missing")),
        ("unreadable (header, size, truncation)", report.count("unreadable")),
        ("unreadable (full decode)", report.count("decode")),
        (f"duplicated (identical pixels, {len(report.duplicates)} groups)", duplicated),
        ("near-duplicate pairs (data.near_duplicates)", len(report.near_duplicates)),
        (
            "label problems (MOS not finite, listed twice, same pixels other MOS)",
            report.count("label"),
        ),
        ("listed again, first row kept (data.duplicate_labels=first)", len(report.later_listings)),
        ("usable", report.usable),
    ]
    for label, count in rows:
        table.add_row(label, f"{count:,}")
    console.print(table)
    if len(report.mos_raw):
        console.print(
            f"MOS as published: min {report.mos_raw.min():.4g}, max "
            f"{report.mos_raw.max():.4g}, mean {report.mos_raw.mean():.4g}; normalised "
            f"to [0, 1] (higher = better): min {report.mos.min():.4f}, max "
            f"{report.mos.max():.4f}"
        )
        console.print("\n".join(histogram_lines(report.mos_raw)), markup=False)

    def listing(title: str, lines: list[str]) -> None:
        if lines:
            console.print(f"{title} ({len(lines)}):", markup=False)
            console.print("\n".join(f"  - {line}" for line in lines[:show]), markup=False)
            if len(lines) > show:
                console.print(f"  … and {len(lines) - show} more")

    listing("case-resolved", [f"{n['image']}: {n['note']}" for n in report.case_resolved])
    listing("wrong extension", [f"{n['image']}: {n['note']}" for n in report.wrong_extension])
    listing("listed again", [f"{n['image']}: {n['note']}" for n in report.later_listings])
    for kind in ("missing", "unreadable", "decode", "label"):
        listing(kind, [f"{b['image']}: {b['reason']}" for b in report.bad if b["kind"] == kind])
    listing("identical images", [", ".join(group) for group in report.duplicates])
    listing(
        "near-duplicate pairs",
        [
            f"{p['image_a']} (MOS {p['mos_raw_a']:.4g}) ~ {p['image_b']} "
            f"(MOS {p['mos_raw_b']:.4g}): "
            f"thumbnail correlation {p['correlation']:.4f}, PSNR {p['psnr']:.1f} dB"
            for p in report.near_duplicates
        ],
    )
    if report.near_duplicates:
        console.print(twin_agreement(report.near_duplicates), markup=False)
    code, verdict = report.verdict
    console.print(verdict, style="bold red" if code else "bold green", markup=False)


def run_check(cfg: DictConfig, console: Console | None = None) -> int:
    """Instantiate ``cfg.data``, check it, print the report; returns the exit status."""
    check_config(cfg)
    console = console or Console()
    datamodule: IQADatabase = hydra.utils.instantiate(
        database_config(cfg.data), protocol=cfg.protocol
    )
    datamodule.hash_cache_dir = cfg.paths.cache_dir  # thumbnails and near-duplicate pairs
    try:
        datamodule.prepare_data()
        report = check_database(datamodule, decode=cfg.decode, workers=cfg.workers)
    except ConfigError:
        raise  # a key to fix, not the label files: one line from cli.run_command, exit 1
    except (OSError, ValueError, KeyError) as err:
        console.print(
            f"cannot parse the label files of '{datamodule.name}': {one_line(err)}",
            style="bold red",
            markup=False,
            soft_wrap=True,  # one line, however wide the terminal
        )
        return UNPARSABLE
    render(report, console, show=cfg.show)
    return report.verdict[0]


@hydra.main(version_base="1.3", config_path="../../conf", config_name="check")
@one_line_errors
def main(cfg: DictConfig) -> None:
    sys.exit(run_check(cfg))


if __name__ == "__main__":
    run_command(main)
