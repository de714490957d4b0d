"""The C allocator's threshold for giving large blocks their own memory map (glibc ``mallopt``).

glibc serves a block above ``M_MMAP_THRESHOLD`` with its own memory map, returned to the system
when freed; smaller blocks come from the heap, which keeps freed memory. By default the threshold
grows (up to 32 MiB) each time such a block is freed, so a training step's activations soon land
in the heap: they stay resident between steps and fragment it, and the peak grows from batch to
batch (lite0, batch 16, 384 px: 4.3 → 5.0 GiB over three steps). A fixed threshold keeps every
activation tensor in its own map: the peak stays that of one step. Values are unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from iqa_lab.errors import ConfigError

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def set_mmap_threshold(kib: int | None) -> bool:
    """Fix glibc's mmap threshold at ``kib`` KiB (None: leave glibc's default); whether it was
    set (False on a system without glibc)."""
    if kib is None:
        return False
    if int(kib) < 0:
        raise ConfigError(
            f"malloc_mmap_threshold_kb={kib}: give KiB >= 0, or null for glibc's default"
        )
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.info("malloc_mmap_threshold_kb=%s: no glibc mallopt on this system; ignored", kib)
        return False
    if not mallopt(M_MMAP_THRESHOLD, int(kib) * 1024):
        raise ConfigError(
            f"malloc_mmap_threshold_kb={kib}: glibc refused it (at most 32768 KiB on older "
            f"glibc); give a smaller value, or null for glibc's default"
        )
    return True
