"""The package's logger, visible by default like those of HF and MLflow.

Info lines (where a run's metrics go, the summary at close) are printed to
stderr when the application has not configured logging; when it has, they go
through its handlers. ``CRAFT_CALLBACKS_VERBOSITY`` (``debug``, ``info``,
``warning``, ``error``) sets the level.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Final

from craft_callbacks.exceptions import CraftCallbacksWarning

logger = logging.getLogger("craft_callbacks")
LEVELS: Final = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}
_configured = False


def visible_logger() -> logging.Logger:
    """The package logger, with a stderr handler when nothing else would show its lines."""
    global _configured
    if not _configured:
        _configured = True
        level = os.environ.get("CRAFT_CALLBACKS_VERBOSITY", "").strip()
        if level.upper() in LEVELS:
            logger.setLevel(LEVELS[level.upper()])
        else:
            if level:
                warnings.warn(
                    f"craft_callbacks: CRAFT_CALLBACKS_VERBOSITY={level!r} is not one of "
                    f"{', '.join(name.lower() for name in LEVELS)}; it is ignored",
                    CraftCallbacksWarning,
                    stacklevel=3,
                )
            if logger.level == logging.NOTSET:  # keep a level the application chose
                logger.setLevel(logging.INFO)
        if not logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            logger.propagate = False
    return logger
