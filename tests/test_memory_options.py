"""Options that lower a training run's peak memory without changing its numbers (or saying how
they do): glibc's fixed mmap threshold and the backbone's gradient checkpointing."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from iqa_lab.allocator import set_mmap_threshold
from iqa_lab.errors import ConfigError
from iqa_lab.nn.backbones import Backbone

# Frees every other 2 MiB block of 100 after glibc's threshold grew past 2 MiB; prints the
# freed MiB that stay resident.
RETAINED = """
import sys
import numpy as np
from iqa_lab.allocator import set_mmap_threshold

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

set_mmap_threshold(None if sys.argv[1] == "null" else int(sys.argv[1]))
big = np.ones(20 * 2**20 // 8)
del big  # glibc's default threshold now exceeds 20 MiB
blocks = [np.ones(2 * 2**20 // 8) for _ in range(100)]
before = rss_mib()
del blocks[::2]  # 50 blocks of 2 MiB freed between live ones
print(50 * 2 - (before - rss_mib()))
"""


def retained_mib(threshold: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", RETAINED, threshold], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_fixed_mmap_threshold_returns_freed_blocks():
    assert retained_mib("null") > 80  # glibc's default: the freed blocks stay in the heap
    assert retained_mib("128") < 10  # each block had its own map, unmapped when freed


def test_mmap_threshold_refuses_a_negative_size():
    assert set_mmap_threshold(None) is False
    with pytest.raises(ConfigError, match=r"malloc_mmap_threshold_kb=-1: give KiB >= 0"):
        set_mmap_threshold(-1)


def test_grad_checkpointing_gives_the_same_gradients_and_batchnorm_statistics():
    torch.manual_seed(0)
    plain = Backbone("tf_efficientnet_lite0")
    torch.manual_seed(0)
    checkpointed = Backbone("tf_efficientnet_lite0", grad_checkpointing=True)
    assert checkpointed.model.grad_checkpointing and not plain.model.grad_checkpointing
    for step in range(2):
        images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(step))
        for backbone in (plain, checkpointed):
            backbone.train()
            backbone.zero_grad()
            backbone(images).sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        assert torch.equal(a.grad, b.grad), name
    bn = [m for m in checkpointed.model.blocks.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {int(m.num_batches_tracked) for m in bn} == {4}  # forward + recompute, two steps
    moved = 0
    for (name, a), (_, b) in zip(plain.named_buffers(), checkpointed.named_buffers()):
        if name.endswith(("running_mean", "running_var")):
            # the statistics move as in one update per step, not two
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
            moved += 1
    assert moved > 50


def test_grad_checkpointing_leaves_paths_that_run_the_stages_themselves_alone():
    """A frozen prefix runs the trainable stages one by one (no recompute): their BatchNorm
    momentum must stay the pretrained one."""
    plain = Backbone("tf_efficientnet_lite0", frozen_stages=6)
    asked = Backbone("tf_efficientnet_lite0", frozen_stages=6, grad_checkpointing=True)
    assert not asked.grad_checkpointing and not asked.model.grad_checkpointing
    momenta = [m.momentum for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert momenta == [m.momentum for m in asked.modules() if isinstance(m, torch.nn.BatchNorm2d)]
