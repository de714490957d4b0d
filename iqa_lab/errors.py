"""The project's own errors: what a user can fix (a config key, a label file, an image, a split).

Their messages name the file or key and the fix; the commands print them as one line and exit 1
(``iqa_lab.cli``). Anything else is a bug or a library's error and keeps its traceback. Nothing in
this module imports from iqa_lab.
"""

from __future__ import annotations


class IQALabError(Exception):
    """An error the user can fix; the message names the file or key and the fix."""


class ConfigError(IQALabError, ValueError):
    """A config key whose value cannot work (``data.batch_size=0``); the message names the key."""


class MissingFileError(IQALabError, FileNotFoundError):
    """A file that a config key names does not exist (``ckpt_path=``, ``model.init_from=``)."""
