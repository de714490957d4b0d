"""The batch contract every architecture lands on: what a model declares (``needs``,
``pretrained_modules``) and what it then gets (a reference under the image's geometry, the pad
mask, learning-rate groups, frozen BatchNorm, reload without weights)."""

from __future__ import annotations

import json
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import timm
import torch
from omegaconf import open_dict
from torch import nn

from iqa_lab.data.bad_inputs import BadInputError
from iqa_lab.data.transforms import build_transform
from iqa_lab.models.base import IQAModule, load_iqa_module
from iqa_lab.models.qualitynet import QualityNet
from iqa_lab.nn import backbones
from iqa_lab.nn.backbones import Backbone
from iqa_lab.nn.pooling import masked_mean_pool
from iqa_lab.runs import seeded_datamodule
from iqa_lab.train import train
from tests.planted import FolderDataModule, labels, padded_test_batch, pattern, plant, png_bytes
from tests.train_runs import bare_trainer

OPTIMIZER = {"_target_": "torch.optim.SGD", "lr": 0.01}


class ToyFR(IQAModule):
    """A full-reference toy: quality falls with the mean absolute difference to the reference."""

    needs = frozenset({"reference"})

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.weight = nn.Parameter(torch.tensor(0.1))
        self.bias = nn.Parameter(torch.tensor(0.5))

    def forward(self, image, *, reference=None, mask=None, heads=None):
        assert reference.shape == image.shape
        difference = (image - reference).abs().mean(dim=(1, 2, 3))
        return self.bias + self.weight * difference * 10


class MaskProbe(IQAModule):
    """Records what ``forward`` receives."""

    def __init__(self):
        super().__init__(optimizer=OPTIMIZER)
        self.weight = nn.Parameter(torch.ones(()))
        self.calls: list[dict] = []

    def forward(self, image, *, reference=None, mask=None, heads=None):
        self.calls.append({"mask": mask, "reference": reference, "heads": heads})
        return masked_mean_pool(image, mask).mean(dim=1) * self.weight


class TwoEncoderIQA(IQAModule):
    """Two pretrained encoders (a dual-stream model) and a head with a BatchNorm of its own."""

    pretrained_modules = ("encoder_a", "encoder_b")

    def __init__(self, encoder_a: dict, encoder_b: dict, **kwargs):
        super().__init__(**kwargs)
        self.encoder_a = Backbone(**encoder_a)
        self.encoder_b = Backbone(**encoder_b)
        width = self.encoder_a.num_features + self.encoder_b.num_features
        self.head = nn.Sequential(nn.Linear(width, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))

    def forward(self, image, *, reference=None, mask=None, heads=None):
        features = torch.cat([self.encoder_a(image), self.encoder_b(image)], dim=1)
        return self.head(features).squeeze(-1)


# --- the reference: same geometry as the image, pixel for pixel ----------------------------------


def test_reference_gets_the_images_crop_and_flip_and_no_pixel_augmentation():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    plain = build_transform("train", resize_short_side=48, crop_size=32, hflip=True, vflip=True)
    augmented = build_transform(
        "train",
        resize_short_side=48,
        crop_size=32,
        hflip=True,
        vflip=True,
        augment={"RandomBrightnessContrast": {"p": 1.0}, "Transpose": {"p": 1.0}},
    )
    transposed = build_transform(
        "train",
        resize_short_side=48,
        crop_size=32,
        hflip=True,
        vflip=True,
        augment={"Transpose": {"p": 1.0}},
    )

    def run(transform, seed, **pixels):
        transform.set_random_seed(seed)
        return transform(**pixels)

    boxes = set()
    for seed in range(12):
        alone = run(plain, seed, image=image)["image"]
        pair = run(plain, seed, image=image, reference=image.copy())
        # The same crop box and flips: an image that is its own reference comes out identical,
        # and identical to the image transformed alone.
        assert torch.equal(pair["image"], pair["reference"]) and torch.equal(alone, pair["image"])
        # A geometric augmentation moves both; a pixel-level one changes the image only.
        out = run(augmented, seed, image=image, reference=image.copy())
        assert torch.equal(out["reference"], run(transposed, seed, image=image)["image"])
        assert torch.equal(out["reference"], alone.transpose(1, 2))
        assert not torch.equal(out["image"], out["reference"])
        boxes.add(alone.sum().item())
    assert len(boxes) > 6  # the seeds did draw different crops and flips


def test_five_crops_of_the_reference_are_the_images_boxes():
    image = pattern(50, 70, seed=3)
    five = build_transform("test", resize_short_side=40, crop_size=32, crop="five")
    out = five(image=image, reference=image.copy())
    assert out["image"].shape == out["reference"].shape == (5, 3, 32, 32)
    assert torch.equal(out["image"], out["reference"])
    assert torch.equal(out["image"], five(image=image)["image"])
    assert [A.SmallestMaxSize, A.PadIfNeeded] == [type(op) for op in five.pre.transforms]


def test_dataset_yields_the_reference_under_the_same_seeded_transform(make_cfg):
    cfg = make_cfg(
        "train", ["data.transforms.train.crop_size=40", "data.transforms.train.hflip=true"]
    )
    datamodule = seeded_datamodule(cfg, "fit")
    train_set = datamodule.datasets["train"]
    assert "reference" not in train_set[0]
    datamodule.provide({"reference"})
    train_set.set_augment_seed(7)
    records = datamodule.records.loc[train_set.index.numpy()]
    pristine = np.flatnonzero(records["dist_type"].to_numpy() == "pristine")
    distorted = np.flatnonzero(records["dist_type"].to_numpy() != "pristine")
    assert len(pristine) and len(distorted)
    for i in pristine:  # a pristine crop is its own reference: identical after crop and flip
        item = train_set[int(i)]
        assert item["image"].shape == item["reference"].shape == (3, 40, 40)
        assert torch.equal(item["image"], item["reference"])
    for i in distorted[:4]:  # a distorted one differs from its reference, on the same grid
        item = train_set[int(i)]
        assert item["reference"].shape == item["image"].shape
        assert not torch.equal(item["image"], item["reference"])
        reference = datamodule.data_dir / records.iloc[int(i)]["reference"]
        assert reference.name.endswith("_pristine_0.png") and reference.is_file()


# --- a full-reference model: provided, or refused by name ----------------------------------------


def _toy_fr_cfg(make_cfg, overrides=()):
    cfg = make_cfg("train", ["trainer.max_epochs=4", "callbacks=none", "logger=none", *overrides])
    with open_dict(cfg):
        cfg.model = {
            "_target_": f"{__name__}.ToyFR",
            "_recursive_": False,
            "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.05},
        }
    return cfg


def test_a_full_reference_toy_model_trains_on_the_synthetic_database(make_cfg):
    cfg = _toy_fr_cfg(make_cfg)
    metrics = train(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert results["metrics"]["test/srcc"] == metrics["test/srcc"]
    # Quality falls with the distance to the reference: training turns the weight negative, and
    # the test split ranks as the pseudo-MOS does.
    assert metrics["test/srcc"] > 0.6, metrics


def test_a_model_needing_references_is_refused_on_a_database_without(make_cfg, tmp_path):
    cfg = _toy_fr_cfg(make_cfg, ["data.include_pristine=false"])
    with pytest.raises(ValueError, match="database 'synthetic' gives no reference images"):
        train(cfg)
    names = [f"img{i}.png" for i in range(6)]
    plant(tmp_path, {n: png_bytes(pattern(seed=i)) for i, n in enumerate(names)})
    folder = FolderDataModule(labels(names), tmp_path)
    folder.setup()
    with pytest.raises(ValueError, match="database 'planted' gives no reference images"):
        folder.provide({"reference"})
    with pytest.raises(ValueError, match=r"a model needs \['depth'\]"):
        folder.provide({"depth"})


# --- the pad mask reaches the model ---------------------------------------------------------------


def test_native_resolution_batches_pass_their_mask_to_forward(tmp_path):
    sizes = [(30, 40), (44, 20), (16, 16), (20, 60), (36, 36), (28, 30), (50, 24), (24, 50)]
    batch, shapes = padded_test_batch(tmp_path, sizes, batch_size=8)
    assert len(shapes) > 1 and not batch["mask"].all()
    model = MaskProbe()
    scores = model.predict_batch(batch)
    [call] = model.calls
    assert call["mask"] is batch["mask"] and call["reference"] is None
    # Padding does not move a score: each equals the same image scored alone, unpadded.
    for k, (height, width) in enumerate(shapes):
        alone = batch["image"][k : k + 1, :, :height, :width]
        torch.testing.assert_close(scores[k], model.score(alone)[0])


def test_masked_pooling_averages_real_pixels_only():
    features = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[0, :4, :] = True  # the top half of the input: the top two feature rows
    mask[1] = True
    pooled = masked_mean_pool(features, mask)
    torch.testing.assert_close(pooled[0], features[0, :, :2, :].mean(dim=(1, 2)))
    torch.testing.assert_close(pooled[1], features[1].mean(dim=(1, 2)))
    torch.testing.assert_close(masked_mean_pool(features), features.mean(dim=(2, 3)))


# --- two pretrained encoders: learning rates, BatchNorm, reload -----------------------------------


def _two_stream_qualitynet(first: dict, second: dict, **kwargs) -> QualityNet:
    """QualityNet (both attention blocks) on the given streams, with a head of one small layer."""
    return QualityNet(
        streams={"stream1": first, "stream2": second},
        head={"widths": [8], "dropouts": [0.0]},
        spatial_attention={"kernel_size": 3},
        channel_attention={"reduction": 8},
        **kwargs,
    )


@pytest.fixture(params=[TwoEncoderIQA, _two_stream_qualitynet], ids=["toy", "qualitynet"])
def two_encoders(request, tmp_path, monkeypatch):
    """The first encoder from a local weights file, the second 'from the hub' (a stand-in that
    counts); the toy two-encoder model, and QualityNet."""
    weights = tmp_path / "lite0.pth"
    torch.save(timm.create_model("tf_efficientnet_lite0").state_dict(), weights)
    downloads = []

    def fake_hub(name):
        downloads.append(name)
        return timm.create_model(name, pretrained=False)

    monkeypatch.setattr(backbones, "_create_from_hub", fake_hub)
    model = request.param(
        {"name": "tf_efficientnet_lite0", "checkpoint": str(weights)},
        {"name": "mobilenetv3_small_050", "pretrained": True},
        optimizer=OPTIMIZER,
        head_lr_multiplier=10.0,
        freeze_bn=True,
    )
    return model, weights, downloads


def test_every_declared_encoder_trains_at_the_backbone_learning_rate(two_encoders):
    model, _, downloads = two_encoders
    assert downloads == ["mobilenetv3_small_050"]
    encoders, head = model.param_groups()
    assert len(model.pretrained_modules) == 2
    encoder_ids = {
        id(p) for name in model.pretrained_modules for p in getattr(model, name).parameters()
    }
    assert {id(p) for p in encoders["params"]} == encoder_ids and encoders["lr"] == 0.01
    others = {id(p) for p in model.parameters()} - encoder_ids
    assert {id(p) for p in model.head.parameters()} <= others
    assert {id(p) for p in head["params"]} == others
    assert head["lr"] == pytest.approx(0.1)
    assert len(encoders["params"]) + len(head["params"]) == len(list(model.parameters()))


def test_freeze_bn_keeps_the_encoders_statistics_and_trains_the_heads(two_encoders):
    model, _, _ = two_encoders
    model.train()
    model.on_train_epoch_start()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    in_encoders = {
        id(m) for name in model.pretrained_modules for m in getattr(model, name).modules()
    }
    assert any(id(m) in in_encoders for m in norms)
    for module in norms:
        assert module.training == (id(module) not in in_encoders)


def test_reload_builds_the_encoders_without_weights(two_encoders, tmp_path, monkeypatch):
    model, weights, downloads = two_encoders
    images = torch.rand(8, 3, 32, 32)
    loader = torch.utils.data.DataLoader(
        [{"image": images[i], "mos": torch.rand(()), "index": torch.tensor(i)} for i in range(8)],
        batch_size=4,
    )
    trainer = bare_trainer(max_steps=2)
    trainer.fit(model, train_dataloaders=loader)
    trainer.save_checkpoint(tmp_path / "toy.ckpt")
    weights.unlink()  # the first encoder's weights file is gone

    def no_hub(name):
        raise AssertionError(f"reload tried to fetch {name}")

    monkeypatch.setattr(backbones, "_create_from_hub", no_hub)
    with pytest.raises(FileNotFoundError):  # building from the config would need the file
        Backbone(name="tf_efficientnet_lite0", checkpoint=str(weights))
    reloaded = load_iqa_module(str(tmp_path / "toy.ckpt"))
    assert type(reloaded) is type(model) and downloads == ["mobilenetv3_small_050"]
    model.eval()
    reloaded.eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        torch.testing.assert_close(model.score(images), reloaded.score(images))


def test_pretrained_modules_must_name_submodules():
    class Misdeclared(MaskProbe):
        pretrained_modules = ("encoder",)

    with pytest.raises(ValueError, match="names 'encoder', which is not one of its submodules"):
        Misdeclared().param_groups()
    probe = MaskProbe()
    probe.hparams.freeze_bn = True
    with pytest.raises(ValueError, match="freeze_bn=true needs pretrained submodules"):
        probe.on_train_epoch_start()


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "mobilenetv3_small_050"])
def test_backbone_pools_a_padded_batch_over_real_pixels(name):
    backbone = Backbone(name=name).eval()
    images = torch.rand(2, 3, 64, 64)
    full = torch.ones(2, 64, 64, dtype=torch.bool)
    with torch.no_grad():
        plain, masked = backbone(images), backbone(images, mask=full)
    assert plain.shape == masked.shape == (2, backbone.num_features)
    torch.testing.assert_close(plain, masked)  # an all-real mask is plain average pooling
    half = full.clone()
    half[:, 32:] = False
    with torch.no_grad():
        assert not torch.allclose(backbone(images, mask=half), plain)


# --- data=mixed: one bad-input setting, references under each member's folder --------------------


class WithReferences(FolderDataModule):
    """A planted database whose records name a reference (``ref_<image>``) beside each image."""

    def load_records(self):
        records = super().load_records()
        records["reference"] = "ref_" + records["image"]
        return records


def _member(
    folder: Path,
    name: str,
    images: list[str],
    on_bad: str,
    broken: str | None = None,
    seed: int = 0,
):
    plant(folder, {n: png_bytes(pattern(seed=seed + i)) for i, n in enumerate(images)})
    plant(folder, {f"ref_{n}": png_bytes(pattern(seed=seed + i)) for i, n in enumerate(images)})
    if broken:
        (folder / broken).write_bytes(b"")
    member = WithReferences(labels(images), folder, on_bad=on_bad)
    member.name = name
    return member


def _mixed(tmp_path, mixed_on_bad: str, member_on_bad: str):
    from iqa_lab.data.mixed import MixedDataModule

    images = [f"img{i}.png" for i in range(6)]
    members = {
        "a": _member(tmp_path / "a", "a", images, member_on_bad, broken="img2.png"),
        "b": _member(tmp_path / "b", "b", images, member_on_bad, seed=10),
    }
    return MixedDataModule(
        databases=members,
        name="mixed",
        data_dir=str(tmp_path),
        transforms={},
        on_bad=mixed_on_bad,
        protocol={"name": "random", "train_fraction": 0.5, "val_fraction": 0.5},
    )


def test_mixed_on_bad_governs_every_member(tmp_path):
    lenient = _mixed(tmp_path, "skip", member_on_bad="raise")
    lenient.setup()
    assert [(item["image"], item["db"]) for item in lenient.bad_inputs] == [("img2.png", "a")]
    assert len(lenient.records) == 11
    strict = _mixed(tmp_path / "strict", "raise", member_on_bad="skip")
    with pytest.raises(BadInputError, match=r"img2\.png"):
        strict.setup()


def test_mixed_references_resolve_under_each_members_folder(tmp_path):
    mixed = _mixed(tmp_path, "skip", member_on_bad="skip")
    mixed.setup()
    paths = mixed.reference_paths(mixed.records)
    for (db, image), path in zip(mixed.records[["db", "image"]].to_numpy(), paths):
        assert path == tmp_path / db / f"ref_{image}" and path.is_file()
    mixed.provide({"reference"})
    item = mixed.datasets["test"][0]
    assert torch.equal(item["image"], item["reference"])  # planted as copies
