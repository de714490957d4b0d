"""Image files, decided once: finding them, probing them cheaply, decoding them the way raters saw
them.

Decoding (``load_rgb``) always yields an ``(H, W, 3)`` uint8 array:

- the format is taken from the file's content, not its extension (a PNG named ``.jpg`` decodes; the
  probe notes the mismatch);
- EXIF orientation is applied (raters saw the photo upright in their viewer);
- CMYK, YCbCr, grey, 1-bit and palette images are converted to RGB;
- 16-bit grey (``I;16``, ``I``) is scaled to 8 bits (``round(v / 257)``), not clipped at 255; 16-bit
  colour PNGs are scaled by PIL (most significant byte);
- transparency (``RGBA``, ``LA``, ``PA``, palette or grey with a ``tRNS`` entry) is composited over
  ``BACKGROUND`` (white, as a browser or image viewer shows it), not dropped to a black fringe;
- a truncated file is an error, never a silently grey-filled image: PIL raises on most truncations
  and a file whose format end marker (JPEG ``FFD9``, PNG ``IEND``) is missing is refused even when
  PIL would decode it (PIL silently decodes a PNG that lost its last chunk);
- images over ``max_pixels`` (decompression bombs) are refused before decoding, naming the file and
  the ``data.max_pixels`` setting.

Everything unusable raises ``BadImageError`` whose message names the file and the fix.
``resolve_file`` finds a label's file when only the case of its name differs (BIQ2021 labels
``ss02 (1014).jpg`` for the file ``ss02 (1014).JPG``) and ``probe_image`` checks a file at setup
cost
(header and the last bytes, no decoding).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from iqa_lab.errors import IQALabError

BACKGROUND = (255, 255, 255)  # what transparent pixels are composited over

# The bytes a complete file ends with (some writers append a trailer, hence a search window).
_END_MARKERS = {"JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "PNG": b"IEND"}
_TAIL_BYTES = 4096
_EXTENSIONS = {
    "JPEG": {".jpg", ".jpeg", ".jpe", ".jfif"},
    "MPO": {".jpg", ".jpeg", ".mpo"},
    "PNG": {".png"},
    "BMP": {".bmp", ".dib"},
    "TIFF": {".tif", ".tiff"},
    "GIF": {".gif"},
    "WEBP": {".webp"},
    "PPM": {".ppm", ".pgm", ".pbm", ".pnm"},
}
# File names the run store fingerprints as images (``runstore.image_fingerprint``).
IMAGE_SUFFIXES = frozenset().union(*_EXTENSIONS.values())
# The part of a bad file's fix that only a database run can take (iqa-score leaves it out).
SKIP_HINT = ", or set data.on_bad=skip to drop it (it is then listed in results.json)"
_FIX = "replace the file with a good copy" + SKIP_HINT

# Our own size check (max_pixels) replaces PIL's warning; PIL's hard error is still caught below.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class BadImageError(IQALabError, RuntimeError):
    """An image file that cannot be used; the message names the file and the fix."""


@dataclass
class Resolution:
    """Where a label's file is: ``path`` (None when missing), how it was found, why it is bad."""

    path: Path | None
    note: str | None = None  # e.g. the case-insensitive match that was used
    reason: str | None = None  # set when ``path`` is None


@dataclass
class FileResolver:
    """Finds files, falling back to a case-insensitive match of each path component when unique.

    Directory listings are read once per directory and only for paths that do not exist as
    written, so resolving a clean 10k-image database costs 10k ``stat`` calls."""

    _listings: dict[Path, dict[str, list[str]]] = field(default_factory=dict)

    def _listing(self, directory: Path) -> dict[str, list[str]]:
        if directory not in self._listings:
            names: dict[str, list[str]] = {}
            try:
                for entry in os.scandir(directory):
                    names.setdefault(entry.name.lower(), []).append(entry.name)
            except OSError:
                pass
            self._listings[directory] = names
        return self._listings[directory]

    def resolve(self, path: str | Path) -> Resolution:
        path = Path(path)
        if path.is_file():
            return Resolution(path)
        current = Path(path.anchor) if path.is_absolute() else Path()
        renamed: list[str] = []
        for part in path.parts[len(current.parts) :]:
            if part in ("", ".", ".."):
                current = current / part
                continue
            candidates = self._listing(current).get(part.lower(), [])
            if part in candidates:
                current = current / part
            elif len(candidates) == 1:
                current = current / candidates[0]
                renamed.append(f"'{part}' → '{candidates[0]}'")
            elif candidates:
                return Resolution(
                    None,
                    reason=f"missing as written; names differing only in case "
                    f"are ambiguous: {sorted(candidates)} in {current}",
                )
            else:
                return Resolution(None, reason=self._missing_reason(path, current))
        if not current.is_file():
            return Resolution(None, reason=f"{current} is not a file")
        note = "case-resolved: " + ", ".join(renamed) if renamed else None
        return Resolution(current, note=note)

    @staticmethod
    def _missing_reason(path: Path, deepest: Path) -> str:
        if deepest == path.parent:
            return "file not found (not in its folder under any letter case)"
        folder = path.parts[len(deepest.parts)]
        return f"file not found: no folder '{folder}' in {deepest}; check data.data_dir"


def resolve_file(path: str | Path, resolver: FileResolver | None = None) -> Resolution:
    """``path`` if it exists, else its unique case-insensitive match, else the reason it is bad."""
    return (resolver or FileResolver()).resolve(path)


def _open(path: Path, max_pixels: int | None) -> Image.Image:
    """``Image.open`` (header only) with every failure turned into ``BadImageError``."""
    if max_pixels and Image.MAX_IMAGE_PIXELS and max_pixels > Image.MAX_IMAGE_PIXELS:
        # PIL refuses images over 2 x MAX_IMAGE_PIXELS on its own; let the configured limit rule.
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        if path.stat().st_size == 0:
            raise BadImageError(f"{path}: empty file (0 bytes); {_FIX}")
        image = Image.open(path)
    except FileNotFoundError:
        raise BadImageError(
            f"{path}: file not found; check data.data_dir and the label file"
        ) from None
    except Image.DecompressionBombError as err:
        raise BadImageError(
            f"{path}: refused as a decompression bomb ({err}); raise "
            f"data.max_pixels if this image is genuine, else {_FIX}"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise BadImageError(f"{path}: not an image PIL can read ({err}); {_FIX}") from None
    pixels = image.width * image.height
    if max_pixels and pixels > max_pixels:
        image.close()
        raise BadImageError(
            f"{path}: {image.width}x{image.height} = {pixels:,} pixels exceeds "
            f"data.max_pixels={max_pixels:,} (decompression-bomb guard); raise "
            f"data.max_pixels if this image is genuine, else {_FIX}"
        )
    return image


def _tail_has_end_marker(path: Path, image_format: str | None) -> bool:
    marker = _END_MARKERS.get(image_format or "")
    if marker is None:
        return True
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - _TAIL_BYTES))
        return marker in handle.read()


def _truncation_error(path: Path, image_format: str | None) -> BadImageError:
    return BadImageError(
        f"{path}: truncated {image_format} file (no end marker; the download or "
        f"copy was cut short); {_FIX}"
    )


def _check_complete(path: Path, image_format: str | None) -> None:
    """Raise for a file without its format's end marker (checked in the last bytes first; only a
    file with a long trailer is read whole, and then an embedded thumbnail's marker could pass it,
    in which case PIL's own decoder errors still catch a cut main image)."""
    if _tail_has_end_marker(path, image_format):
        return
    if _END_MARKERS[image_format] not in path.read_bytes():
        raise _truncation_error(path, image_format)


def extension_note(path: Path, image_format: str | None) -> str | None:
    """A note when the extension does not match the content (decoding goes by the content)."""
    expected = _EXTENSIONS.get(image_format or "")
    if expected is None or path.suffix.lower() in expected:
        return None
    return f"wrong extension: {image_format} content named '{path.suffix}'; decoded by content"


def probe_image(path: str | Path, max_pixels: int | None = None) -> str | None:
    """Cheap setup-time check of one file: readable header, size under ``max_pixels``, format end
    marker present. Returns a note (wrong extension) or None; raises ``BadImageError``."""
    path = Path(path)
    with _open(path, max_pixels) as image:
        image_format = image.format
    _check_complete(path, image_format)
    return extension_note(path, image_format)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grey: PIL's convert would clip every value above 255 to white.
        values = np.asarray(image).astype(np.float64)
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        raise BadImageError("floating-point images have no defined display range")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except (KeyError, TypeError, ValueError, SyntaxError, OSError):
        return image


def load_rgb(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3)`` uint8 array (see the module docstring for the rules).
    A ``BadImageError`` from here carries the file in ``path``: results.json lists it with the
    decode failure, and the run store decodes it again before reusing the run."""
    try:
        return _decode_rgb(Path(path), max_pixels)
    except BadImageError as err:
        err.path = str(path)
        raise


def _decode_rgb(path: Path, max_pixels: int | None) -> np.ndarray:
    with _open(path, max_pixels) as image:
        image_format = image.format
        try:
            image.load()
            image = _upright(image)
            rgb = _to_rgb(image)
            array = np.asarray(rgb, dtype=np.uint8).copy()
        except BadImageError as err:
            raise BadImageError(f"{path}: {err}; {_FIX}") from None
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            raise BadImageError(f"{path}: cannot be decoded ({err}); {_FIX}") from None
    _check_complete(path, image_format)
    return array
