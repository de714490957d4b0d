"""``data.on_bad``, decided in one place for every reader of a database's files.

``BadInputs`` holds the run's policy and what it dropped. Three readers consult it:

- setup screening (``IQADataModule.screen_inputs``: labels, missing files, headers): ``refuse``
  raises one error listing every bad record under ``raise``, or records them under ``skip``;
- decoding in the loaders (``IQADataset``): ``decode_failed`` raises naming the file under
  ``raise``, or returns a marker that the collate drops and ``add`` records under ``skip``;
- classical scoring (``models.classical``): ``decode_failed`` then ``add``, as the loaders do.

A dropped item is neither scored nor replaced, so a metric is computed on fewer images but never
on a wrong one, and results.json lists each (``bad_inputs``). Under ``data=mixed`` the members
share the mixed module's ``BadInputs``: one setting governs loading, checking and scoring alike.
"""

from __future__ import annotations

import logging

from iqa_lab.data.images import BadImageError
from iqa_lab.errors import ConfigError, IQALabError

log = logging.getLogger(__name__)

ON_BAD = ("raise", "skip")


class BadInputError(IQALabError, ValueError):
    """Records whose label or image cannot be used under ``data.on_bad=raise``."""


def bad_inputs_message(bad: list[dict], total: int, name: str) -> str:
    """Every bad record with its reason, and the fix."""
    lines = "\n".join(f"  - {item['image']}: {item['reason']}" for item in bad)
    return (
        f"{len(bad)} of {total} records of '{name}' cannot be used (data.on_bad=raise):\n"
        f"{lines}\nFix the label file or the files as each reason says, or set "
        f"data.on_bad=skip to drop these records (they are then listed in results.json under "
        f"bad_inputs)."
    )


class BadInputs:
    """The bad-input policy (``on_bad``: raise or skip) and the items it dropped (``items``:
    ``{"image", "reason", "kind", ...}`` dicts, written to results.json)."""

    def __init__(self, on_bad: str = "raise"):
        if on_bad not in ON_BAD:
            raise ConfigError(f"data.on_bad must be one of {ON_BAD}, got '{on_bad}'")
        self.on_bad = on_bad
        self.items: list[dict] = []

    @property
    def skip(self) -> bool:
        return self.on_bad == "skip"

    def refuse(self, bad: list[dict], total: int, name: str) -> None:
        """Setup screening found ``bad`` records among ``total``: raise listing every one, or
        (``skip``) record them and warn once."""
        if not bad:
            return
        if not self.skip:
            raise BadInputError(bad_inputs_message(bad, total, name))
        self.items.extend({k: v for k, v in item.items() if k != "index"} for item in bad)
        log.warning(
            "data.on_bad=skip: dropped %d of %d records of '%s' (listed in results.json "
            "under bad_inputs): %s",
            len(bad),
            total,
            name,
            "; ".join(f"{b['image']} ({b['kind']})" for b in bad),
        )

    def decode_failed(self, image: str, error: Exception, split: str = "", **fields) -> dict:
        """An image that failed to decode: raise naming it, or (``skip``) the marker to add."""
        if not self.skip:
            raise BadImageError(
                f"{error} (found while reading the {split or 'data'} split; data.on_bad=raise)"
            ) from None
        return {"image": image, "reason": f"decode: {error}", "split": split, **fields}

    def add(self, item: dict) -> None:
        """Record a dropped item once per (image, split), however many epochs meet it."""
        key = (item["image"], item.get("split"), item.get("db"))
        if any(
            (known["image"], known.get("split"), known.get("db")) == key for known in self.items
        ):
            return
        log.warning(
            "data.on_bad=skip: left out %s, which failed to decode (%s)",
            item["image"],
            item["reason"],
        )
        self.items.append({**item, "kind": "decode"})
