"""Warning categories and errors raised by craft_callbacks.

Metrics code never raises into a training loop: everything that goes wrong
while recording becomes one warning of a category below, so users can filter
them (``warnings.simplefilter("ignore", NonNumericMetricWarning)``) or turn
them into errors in their own tests.
"""

from __future__ import annotations


class CraftCallbacksWarning(UserWarning):
    """Base class of every warning this package emits."""


class NonNumericMetricWarning(CraftCallbacksWarning):
    """A value that is not a number (str, None, dict, multi-element tensor...) was dropped."""


class NonFiniteMetricWarning(CraftCallbacksWarning):
    """A NaN, an infinity or a number beyond float range was dropped (JSON cannot carry it)."""


class MetricNameWarning(CraftCallbacksWarning):
    """A metric name had to change beyond the plain character mapping (collision, length, key type)."""


class MetricLimitWarning(CraftCallbacksWarning):
    """A list metric is being thinned to stay under the platform's per-list cap."""


class DeliveryWarning(CraftCallbacksWarning):
    """Metrics could not be delivered to the sink (yet); the message says what happens to them."""


class CraftCallbacksError(Exception):
    """Base class of the errors this package raises (only at set-up, never while recording)."""


class LocalStoreError(CraftCallbacksError):
    """The local metrics store cannot be opened or written (corrupt file, read-only path...)."""


class RunNotFoundError(CraftCallbacksError):
    """No run, or more than one, answers to a run reference (an id, a prefix, ``latest``)."""


class PermanentError(CraftCallbacksError):
    """A sink refused values for good (a 4xx other than 401/408/429); retrying will not help.

    A sink raises it to have a metric refused (one warning, the other metrics go on)
    rather than retried.
    """


class NotSentError(CraftCallbacksError):
    """A sink said it sent nothing (the SDK's ``record_*`` returned False): certainly not stored."""
