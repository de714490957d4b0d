"""StairIQA (Sun et al. 2023): the staircase over timm backbones, per-database heads, the IMDT
schedule and its Lightning run (per-database selection, kill-and-resume, two-process gloo DDP)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from iqa_lab.data.imdt_schedule import IMDTSchedule, epochs_per_database
from iqa_lab.models.stairiqa import StairIQA
from iqa_lab.nn.backbones import Backbone
from iqa_lab.nn.staircase import Staircase
from tests.train_runs import run_train

# Two synthetic databases on different MOS scales, 3 photos x 3 distortions x 2 levels each
# (6 images per content, 64 px): 6 train / 6 val / 6 test images per database.
TINY_IMDT = [
    "experiment=stairiqa_imdt_demo",
    *[
        f"data.databases.{db}.photos={photos}"
        for db, photos in (
            ("synth_a", "[astronaut,coffee,camera]"),
            ("synth_b", "[brick,coins,moon]"),
        )
    ],
    *[
        f"data.databases.{db}.{key}={value}"
        for db in ("synth_a", "synth_b")
        for key, value in (
            ("crop_size", 64),
            ("distortions", "[gaussian_blur,jpeg,white_noise]"),
            ("levels", "[1,5]"),
            ("include_pristine", "false"),
        )
    ],
    "data.batch_size=2",
    "data.eval_batch_size=2",
    "data.imdt.loops=2",
    "data.imdt.epochs_upper=1",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "reuse_finished=false",
]
MODEL = {
    "backbone": {"name": "tf_efficientnet_lite0", "pretrained": False},
    "staircase": {"paths": None},
    "head": {"hidden": 128, "dropout": 0.0},
    "optimizer": {"_target_": "torch.optim.Adam", "lr": 1e-3},
}


@pytest.mark.parametrize("name", ["resnet50", "tf_efficientnet_lite0", "convnext_atto"])
def test_staircase_fuses_every_stage_of_any_timm_backbone(name):
    backbone = Backbone(name, pretrained=False, features_only=True).eval()
    info = backbone.feature_info
    staircase = Staircase(info.channels(), info.reduction())
    assert staircase.path_ids == list(range(1, len(info.channels())))
    with torch.no_grad():
        features = backbone(torch.rand(2, 3, 64, 96))
        fused = staircase(features)
    assert fused.shape == features[-1].shape
    assert fused.shape[1] == info.channels()[-1]
    # Path k has one bridge per level it climbs: from level k-1 up to the last.
    assert [len(p) for p in staircase.paths] == list(range(len(info.channels()) - 1, 0, -1))
    assert not torch.allclose(fused, features[-1])


def test_staircase_paths_ablation_and_odd_sizes():
    backbone = Backbone("tf_efficientnet_lite0", pretrained=False, features_only=True).eval()
    info = backbone.feature_info
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 67, 45))  # odd sizes: levels are off by a pixel
        none = Staircase(info.channels(), info.reduction(), paths=[])(features)
        assert torch.equal(none, features[-1])
        single = Staircase(info.channels(), info.reduction(), paths=[4])
        assert single.path_ids == [4] and len(single.paths[0]) == 1
        assert single(features).shape == features[-1].shape
        assert Staircase(info.channels(), info.reduction())(features).shape == features[-1].shape
    with pytest.raises(ValueError, match=r"paths \[5\] do not exist"):
        Staircase(info.channels(), info.reduction(), paths=[5])


def test_each_head_gets_gradients_only_from_its_own_database():
    model = StairIQA(**MODEL, heads=["koniq", "clive"])
    images = torch.rand(4, 3, 64, 64)
    scores = model.score(images, heads=["koniq", "clive"])
    assert scores.shape == (4, 2)
    assert model.score(images, heads=["clive"]).shape == (4, 1)
    batch = {"image": images, "mos": torch.rand(4), "db": ["clive"] * 4, "index": torch.arange(4)}
    loss, pred = model.model_step(batch, "train")
    assert torch.allclose(pred, scores[:, 1])
    loss.backward()
    grads = {name: [p.grad for p in head.parameters()] for name, head in model.heads.items()}
    assert all(g is None for g in grads["koniq"])
    assert all(g is not None and g.abs().sum() > 0 for g in grads["clive"])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.staircase.parameters())
    # A mixed batch routes every image to its own head.
    model.zero_grad()
    mixed = {**batch, "db": ["koniq", "clive", "clive", "koniq"]}
    _, pred = model.model_step(mixed, "train")
    assert torch.allclose(pred, scores.detach()[[0, 1, 2, 3], [0, 1, 1, 0]], atol=1e-5)
    with pytest.raises(ValueError, match="cannot choose among the heads"):
        model.predict_batch({**batch, "db": ["spaq"] * 4})
    model.active_head = "koniq"
    assert torch.allclose(model.predict_batch(mixed), scores.detach()[:, 0], atol=1e-5)


def test_imdt_epochs_per_database_and_schedule():
    sizes = {"koniq": 7058, "clive": 930, "bid": 468}
    # Algorithm 1 calls E the upper bound: min(round(N_max / N_i), E).
    assert epochs_per_database(sizes, upper=20, rule="min") == {"koniq": 1, "clive": 8, "bid": 15}
    assert epochs_per_database(sizes, upper=5, rule="min") == {"koniq": 1, "clive": 5, "bid": 5}
    # As printed: max(round(N_max / N_i), E).
    assert epochs_per_database(sizes, upper=5, rule="max") == {"koniq": 5, "clive": 8, "bid": 15}
    assert epochs_per_database({"a": 10, "b": 4}, upper=9) == {"a": 1, "b": 3}  # 2.5 rounds up
    with pytest.raises(ValueError, match="epochs_rule"):
        epochs_per_database(sizes, upper=5, rule="mean")
    schedule = IMDTSchedule({"a": 100, "b": 50}, loops=2, epochs_upper=3)
    assert schedule.total_epochs == 2 * (1 + 2)
    assert [(s.loop, s.database, s.epoch) for s in schedule.steps] == [
        (0, "a", 0),
        (0, "b", 0),
        (0, "b", 1),
        (1, "a", 0),
        (1, "b", 0),
        (1, "b", 1),
    ]
    assert schedule.at(4).database == "b"
    with pytest.raises(IndexError):
        schedule.at(6)


def test_imdt_run_selects_and_tests_each_database_on_its_own(make_cfg):
    from iqa_lab.train import train

    cfg = make_cfg("train", TINY_IMDT, tiny=False)
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    results = json.loads((out / "results.json").read_text())
    checkpoints = results["checkpoint"]
    assert sorted(checkpoints) == ["synth_a", "synth_b"]
    for db, path in checkpoints.items():
        assert Path(path).name == f"best_{db}.ckpt" and Path(path).is_file()
        assert f"test/{db}/srcc" in metrics and f"val/{db}/srcc_best" in metrics
    assert (out / "checkpoints" / "last.ckpt").is_file()
    predictions = pd.read_csv(out / "predictions.csv")
    assert (predictions["db"] == predictions["head"]).all()
    assert predictions.groupby("db").size().to_dict() == {"synth_a": 6, "synth_b": 6}
    # The schedule ran 2 loops x 2 databases, one validation per epoch, each on one database.
    logged = pd.read_csv(next(out.glob("csv/**/metrics.csv")))
    assert sorted(logged["imdt/loop"].dropna().unique()) == [0.0, 1.0]
    assert logged["val/srcc"].notna().sum() == 4

    # A database's best model evaluates on another database with a chosen head.
    from iqa_lab.eval import evaluate

    single = [
        "data.photos=[brick,coins,moon]",
        "data.crop_size=64",
        "data.levels=[1,5]",
        "data.distortions=[gaussian_blur,jpeg,white_noise]",
        "data.include_pristine=false",
        "logger=none",
        f"ckpt_path={checkpoints['synth_b']}",
    ]
    with pytest.raises(ValueError, match="cannot choose among the heads"):
        evaluate(make_cfg("eval", single, tiny=False))
    scored = evaluate(make_cfg("eval", single + ["head=synth_b"], tiny=False))
    assert -1 <= scored["test/srcc"] <= 1


def test_selection_test_keeps_each_databases_best_test_srcc_as_the_official_code(make_cfg):
    """The official train_imdt.py keeps, per database, the model with the highest SRCC on that
    database's test split and reports it: protocol.selection=test under callbacks=imdt does the
    same (the test split plays validation), stamped paper-parity."""
    from iqa_lab.train import train

    cfg = make_cfg("train", TINY_IMDT + ["protocol.selection=test"], tiny=False)
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    logged = pd.read_csv(next(out.glob("csv/**/metrics.csv")))
    for db in ("synth_a", "synth_b"):
        assert metrics[f"test/{db}/srcc"] == pytest.approx(metrics[f"val/{db}/srcc_best"], abs=1e-5)
    # Every epoch's validation ran on the active database's test images; the best per database
    # is the maximum over its epochs.
    per_epoch = logged.dropna(subset=["val/srcc"]).set_index("epoch")["val/srcc"]
    steps = IMDTSchedule({"synth_a": 6, "synth_b": 6}, loops=2, epochs_upper=1).steps
    for db in ("synth_a", "synth_b"):
        epochs = [e for e, step in enumerate(steps) if step.database == db]
        assert metrics[f"val/{db}/srcc_best"] == pytest.approx(per_epoch[epochs].max(), abs=1e-6)
    results = json.loads((out / "results.json").read_text())
    assert results["paper_parity"] is True


def test_leave_one_out_tests_every_head_on_the_held_out_database(make_cfg):
    from iqa_lab.train import train

    third = [
        "+data@data.databases.synth_c=synthetic",
        "data.databases.synth_c.name=synth_c",
        "data.databases.synth_c.crops_per_photo=1",
        "data.databases.synth_c.photos=[china,flower,retina]",
        "data.databases.synth_c.crop_size=64",
        "data.databases.synth_c.levels=[1,5]",
        "data.databases.synth_c.distortions=[gaussian_blur,jpeg,white_noise]",
        "data.databases.synth_c.include_pristine=false",
    ]
    cfg = make_cfg(
        "train",
        TINY_IMDT + third + ["protocol=leave_one_out", "protocol.held_out=synth_c"],
        tiny=False,
    )
    metrics = train(cfg)
    for head in ("synth_a", "synth_b"):
        assert -1 <= metrics[f"test/synth_c/by_{head}/srcc"] <= 1
    predictions = pd.read_csv(Path(cfg.paths.output_dir) / "predictions.csv")
    assert set(predictions["db"]) == {"synth_c"}
    assert predictions.groupby("head").size().to_dict() == {"synth_a": 18, "synth_b": 18}
    assert metrics["test/srcc"] == pytest.approx(
        (metrics["test/synth_c/by_synth_a/srcc"] + metrics["test/synth_c/by_synth_b/srcc"]) / 2
    )


def _run(
    args: list[str], out: Path, cache: Path, check: bool = True
) -> subprocess.CompletedProcess:
    return run_train([*TINY_IMDT, *args], out, cache, check)


def _headline(out: Path) -> dict:
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if k.endswith(("/srcc", "/plcc", "/rmse", "_best"))}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("imdt") / "reference"
    _run(["data.imdt.loops=3"], out, cache_dir)
    return out


def test_kill_mid_schedule_and_resume_gives_identical_metrics(reference_run, tmp_path, cache_dir):
    killed = tmp_path / "killed"
    done = _run(
        [
            "data.imdt.loops=3",
            "+callbacks.kill._target_=tests.killer.KillAtEpoch",
            "+callbacks.kill.epoch=3",
        ],
        killed,
        cache_dir,
        check=False,
    )
    assert done.returncode == -9, done.stderr[-2000:]  # SIGKILL in epoch 3: loop 1, synth_b
    assert not (killed / "results.json").exists()
    resumed = tmp_path / "resumed"
    _run(
        ["data.imdt.loops=3", f"ckpt_path={killed / 'checkpoints' / 'last.ckpt'}"],
        resumed,
        cache_dir,
    )
    logged = pd.read_csv(next(resumed.glob("csv/**/metrics.csv")))
    assert logged["epoch"].min() == 3  # continues at the epoch that was killed
    expected, got = _headline(reference_run), _headline(resumed)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    expected_bytes = (reference_run / "predictions.csv").read_bytes()
    assert (resumed / "predictions.csv").read_bytes() == expected_bytes
    # Each database's best model is tested from the resumed run's own folder (copied over).
    tested = json.loads((resumed / "results.json").read_text())["checkpoint"]
    assert {Path(path).parent for path in tested.values()} == {resumed / "checkpoints"}


def test_two_process_gloo_ddp_matches_one_process(reference_run, tmp_path, cache_dir):
    two = tmp_path / "ddp"
    _run(
        [
            "data.imdt.loops=3",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.sync_batchnorm=false",
        ],
        two,
        cache_dir,
    )
    results = json.loads((two / "results.json").read_text())
    assert results["config"]["trainer"]["strategy"].startswith("ddp")
    expected, got = _headline(reference_run), _headline(two)
    assert got.keys() == expected.keys()
    # Two halves of each batch averaged by all-reduce equal the whole batch up to float32
    # rounding, which three loops of training carry to ~1e-4 relative (a wrong sampler or a
    # dropped item moves these numbers by 1e-2 or more); rank correlations match exactly.
    for key, value in expected.items():
        exact = key.endswith(("srcc", "srcc_best"))
        tolerance = (
            pytest.approx(value, abs=1e-9) if exact else pytest.approx(value, rel=1e-3, abs=1e-3)
        )
        assert got[key] == tolerance, key


def test_per_database_checkpoint_ranks_nan_below_any_score(tmp_path):
    from iqa_lab.training.imdt import PerDatabaseCheckpoint

    best = PerDatabaseCheckpoint(str(tmp_path))
    nan = float("nan")
    assert best._better(nan, None) and best._better(0.1, nan) and not best._better(nan, 0.1)
    assert best._better(0.2, 0.1) and not best._better(0.1, 0.2)
    assert PerDatabaseCheckpoint(str(tmp_path), monitor="val/loss", mode="min")._better(0.1, 0.2)


# --- StairIQA as the authors ran it ---------------------------------------------------------------
def test_the_paper_head_has_no_activation_between_its_two_layers(make_cfg):
    from iqa_lab.nn.heads import MLPHead

    cfg = make_cfg(overrides=["model=stairiqa"])
    assert cfg.model.head.activation is None
    linear = MLPHead(8, hidden=4, dropout=0.0, activation=cfg.model.head.activation)
    assert [type(m).__name__ for m in linear.net] == ["Linear", "Dropout", "Linear"]
    x, y = torch.randn(3, 8), torch.randn(3, 8)
    zero = linear(torch.zeros(3, 8))
    # No activation: the two FC layers are one affine map.
    torch.testing.assert_close(linear(x + y) - zero, (linear(x) - zero) + (linear(y) - zero))
    ours = MLPHead(8, hidden=4, dropout=0.0)  # the baseline's default keeps GELU
    assert [type(m).__name__ for m in ours.net] == ["Linear", "GELU", "Dropout", "Linear"]
    assert make_cfg(overrides=["model=baseline"]).model.head.get("activation", "gelu") == "gelu"
    with pytest.raises(ValueError, match="head activation must be one of"):
        MLPHead(8, activation="tanh")


def test_the_paper_trains_without_flips(make_cfg):
    assert make_cfg(overrides=["experiment=stairiqa"]).data.transforms.train.hflip is False
    for preset in ("stairiqa", "stairiqa_flive", "stairiqa_flive_patches"):
        cfg = make_cfg(overrides=[f"+transforms={preset}"])
        assert cfg.data.transforms.train.hflip is False, preset


@pytest.mark.parametrize(
    ("preset", "pad", "crop"), [("stairiqa_flive", 340, 320), ("stairiqa_flive_patches", 256, 224)]
)
def test_flive_pictures_are_white_filled_then_scaled(make_cfg, preset, pad, crop):
    """The official code scales the white-filled FLIVE pictures (Resize(340) / Resize(256) on
    the padded folders): a small picture is filled to pad x pad, unscaled; a large one is scaled
    to a short side of pad; then the five crops."""
    import cv2

    from iqa_lab.data.transforms import build_transform

    cfg = make_cfg(overrides=[f"+transforms={preset}"])
    five = build_transform("test", **cfg.data.transforms.eval)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (50, 100, 3), dtype=np.uint8)
    crops = five(image=small)["image"]
    assert tuple(crops.shape) == (5, 3, crop, crop)
    filled = np.full((pad, pad, 3), 255, np.uint8)
    top, left = (pad - 50) // 2, (pad - 100) // 2
    filled[top : top + 50, left : left + 100] = small
    np.testing.assert_allclose(crops[0].permute(1, 2, 0).numpy(), filled[:crop, :crop] / 255.0)
    large = rng.integers(0, 256, (2 * pad, 3 * pad, 3), dtype=np.uint8)
    scaled = cv2.resize(large, (3 * pad // 2, pad), interpolation=cv2.INTER_AREA)
    crops = five(image=large)["image"]
    np.testing.assert_allclose(
        crops[3].permute(1, 2, 0).numpy(), scaled[pad - crop :, -crop:] / 255.0, atol=1 / 255
    )
    train = build_transform("train", **cfg.data.transforms.train)
    assert tuple(train(image=large)["image"].shape) == (3, crop, crop)


def _tiny_stairiqa(heads, lr: float = 1e-3, **kwargs) -> StairIQA:
    return StairIQA(
        **{**MODEL, "optimizer": {"_target_": "torch.optim.Adam", "lr": lr}, **kwargs}, heads=heads
    )


def test_init_from_starts_from_another_runs_weights_only(tmp_path):
    """model.init_from (StairIQA Fig. 5): the shared network and the heads of databases the
    checkpoint has are copied, other heads start fresh, and training starts at epoch 0 with a
    fresh optimizer (not a resume)."""
    import lightning as L

    torch.manual_seed(0)
    source = _tiny_stairiqa(["koniq", "clive"])
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = tmp_path / "four_databases.ckpt"
    torch.save(
        {
            "state_dict": source.state_dict(),
            "epoch": 7,
            "global_step": 700,
            "optimizer_states": [{"state": {}, "param_groups": []}],
        },
        path,
    )
    torch.manual_seed(1)
    target = _tiny_stairiqa(["clive", "bid"], lr=0.0, init_from=str(path))
    fresh_bid = {k: v.clone() for k, v in target.heads["bid"].state_dict().items()}
    theirs = dict(source.named_parameters())
    built_apart = [torch.equal(v, theirs[k]) for k, v in target.named_parameters() if k in theirs]
    assert built_apart and not any(built_apart)

    items = [
        {"image": torch.rand(3, 64, 64), "mos": torch.tensor(0.5), "index": i, "db": "clive"}
        for i in range(4)
    ]
    starts = []

    class Starts(L.Callback):
        def on_train_start(self, trainer, module):
            starts.append((trainer.current_epoch, trainer.global_step))

    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Starts()],
    )
    trainer.fit(target, train_dataloaders=torch.utils.data.DataLoader(items, batch_size=2))
    assert starts == [(0, 0)]  # weights only: no epoch, step or optimizer state restored
    for (
        name,
        value,
    ) in target.named_parameters():  # lr 0: the loaded weights are still there after the fit
        if name.startswith("heads.bid."):
            torch.testing.assert_close(value, fresh_bid[name.removeprefix("heads.bid.")])
        else:
            torch.testing.assert_close(value, theirs[name], msg=name)


def test_init_from_refuses_another_architecture_naming_the_file(tmp_path):
    path = tmp_path / "no_staircase.ckpt"
    other = _tiny_stairiqa(["clive"], staircase={"paths": []})
    torch.save({"state_dict": other.state_dict()}, path)
    target = _tiny_stairiqa(["clive"], init_from=str(path))
    with pytest.raises(ValueError, match=rf"init_from={path}: its architecture does not match"):
        target.setup("fit")
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        _tiny_stairiqa(["clive"], init_from=str(tmp_path / "absent.ckpt")).setup("fit")
