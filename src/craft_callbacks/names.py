"""The metric name policy: one mapping from any key to a name safe in a URL path.

The platform puts a metric's name in the URL path as is, so every sink gets
names from the same deterministic mapping, and local and platform data match:

* ASCII letters, digits, ``_``, ``-`` and ``.`` are kept;
* accented letters lose their accent (``précision`` -> ``precision``);
* every other character becomes ``_`` (``train/loss`` -> ``train_loss``,
  ``val loss`` -> ``val_loss``, ``a?b#c%d`` -> ``a_b_c_d``, ``损失`` -> ``__``);
* a name that would be empty, ``.`` or ``..`` becomes underscores
  (``""`` -> ``_``, ``..`` -> ``__``);
* a name longer than 255 characters is cut to 246 and ends with ``-`` and 8
  hex digits of its hash, so two long names stay apart.

Within one run, two different keys that map to one name are kept apart: the
first keeps the name, the second gets ``-`` and 8 hex digits of its hash and a
:class:`~craft_callbacks.exceptions.MetricNameWarning`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Hashable
from typing import Any, Final

from craft_callbacks.exceptions import MetricNameWarning
from craft_callbacks.notices import Notices
from craft_callbacks.values import describe_type

MAX_NAME_LENGTH: Final = 255
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.\-]")
_SUFFIX_LENGTH: Final = 9  # "-" and 8 hex digits


def _hash_suffix(source: str) -> str:
    return "-" + hashlib.sha1(source.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe_name(source: str) -> str:
    """Map one metric key to its safe name (pure, deterministic)."""
    if source.isascii():
        name = _UNSAFE.sub("_", source)
    else:
        decomposed = unicodedata.normalize("NFKD", source)
        name = _UNSAFE.sub("_", "".join(c for c in decomposed if not unicodedata.combining(c)))
    if not name.strip("."):
        name = "_" * max(len(name), 1)
    if len(name) > MAX_NAME_LENGTH:
        name = name[: MAX_NAME_LENGTH - _SUFFIX_LENGTH] + _hash_suffix(source)
    return name


def disambiguated(name: str, source: str) -> str:
    """The name given to ``source`` when ``name`` is already taken by another key."""
    return name[: MAX_NAME_LENGTH - _SUFFIX_LENGTH] + _hash_suffix(source)


class NameRegistry:
    """The names of one run: each source key gets one safe name, never shared."""

    def __init__(self) -> None:
        self._by_source: dict[str, str] = {}
        self._sources: dict[str, str] = {}

    def resolve(self, source: str) -> tuple[str, str | None]:
        """Return the safe name of ``source`` and, when it collided, the key it collided with."""
        known = self._by_source.get(source)
        if known is not None:
            return known, None
        name = safe_name(source)
        clash = self._sources.get(name)
        if clash is not None:
            name = disambiguated(name, source)
            while name in self._sources:  # a hash collision: practically never
                name = disambiguated(name, name)
        self._by_source[source] = name
        self._sources[name] = source
        return name, clash


class KeyNames:
    """The names of one run's metric keys, saying once about anything surprising.

    A non-string key, two keys that map to one name, an empty or too long
    name: one warning each. A plain renaming (``train/loss`` ->
    ``train_loss``) is one log line.
    """

    def __init__(self, notices: Notices, log: logging.Logger) -> None:
        self._registry = NameRegistry()
        self._notices = notices
        self._log = log

    def name_for(self, key: Any) -> str:
        """The run's safe name for a metric key."""
        if isinstance(key, str):
            source = key
        else:
            source = key_text(key)
            self._notices.once(
                MetricNameWarning,
                source,
                f"metric key of type {describe_type(key)} is not a string; recorded as {source!r}",
            )
        name, clash = self._registry.resolve(source)
        if clash is not None:
            self._notices.once(
                MetricNameWarning,
                source,
                f"metric names {clash!r} and {source!r} both map to a safe name; "
                f"{source!r} is recorded as {name!r} to keep them apart",
            )
        elif not source:
            self._notices.once(MetricNameWarning, source, f"empty metric name recorded as {name!r}")
        elif len(source) > MAX_NAME_LENGTH:
            self._notices.once(
                MetricNameWarning,
                source,
                f"metric name of {len(source)} characters shortened to {name!r} (at most {MAX_NAME_LENGTH})",
            )
        elif name != source and self._notices.mark("renamed", name):
            self._log.info("craft_callbacks: metric %r is recorded as %r", source, name)
        return name


def key_text(key: Any) -> str:
    """A non-string key as text: ``str(key)``, or its type when it cannot be printed."""
    try:
        return str(key)
    except Exception:  # an int beyond the str() digit limit, a broken __str__
        return f"{type(key).__name__}-key"


def cache_key(key: Any) -> tuple[type, Hashable]:
    """Where a non-string key's appenders are cached: a key unequal to itself (NaN) by its text."""
    try:
        same = bool(key == key)
    except Exception:
        same = False
    return (type(key), key) if same else (type(key), key_text(key))
