"""``data=spaq``: the DataModule of SPAQ (Fang et al., CVPR 2020), read from resized copies when
``resize_short_side`` is set (``databases.spaq.SPAQDatabase``, which ``iqa-check`` uses alone)."""

from __future__ import annotations

from iqa_lab.data.databases.spaq import SPAQDatabase
from iqa_lab.data.datamodule import IQADataModule


class SPAQDataModule(SPAQDatabase, IQADataModule):
    """SPAQ's files (``SPAQDatabase``) split into datasets and loaders (``IQADataModule``)."""
