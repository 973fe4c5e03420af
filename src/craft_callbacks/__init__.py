"""craft_callbacks: a training run's metrics on the Craft AI platform in one line.

``MetricRecorder`` is the core; the adapters live in their own modules and
import their framework only when used:

* ``craft_callbacks.huggingface.CraftAiCallback`` (transformers ``Trainer``)
* ``craft_callbacks.lightning.CraftAiLogger`` (Lightning ``Trainer``)
* ``craft_callbacks.keras.CraftAiKerasCallback`` (Keras ``fit``)

Sinks: the platform (``sink="auto"`` in an execution), :class:`LocalStore`,
:class:`DigitalHubSink` (a DigitalHub run or model), :class:`MemorySink`;
``craft_callbacks.mlflow.record_mlflow_run`` copies an MLflow run to any of them.

Importing this package imports no ML framework and not ``craft-ai-sdk``.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from craft_callbacks.exceptions import (
    CraftCallbacksError,
    CraftCallbacksWarning,
    DeliveryWarning,
    LocalStoreError,
    MetricLimitWarning,
    MetricNameWarning,
    NonFiniteMetricWarning,
    NonNumericMetricWarning,
    PermanentError,
    RunNotFoundError,
)
from craft_callbacks.names import safe_name
from craft_callbacks.recorder import MetricRecorder
from craft_callbacks.sinks import DigitalHubSink, LocalStore, MemorySink

try:  # the version is written once, in pyproject.toml
    __version__ = _version("craft-callbacks")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CraftCallbacksError",
    "CraftCallbacksWarning",
    "DeliveryWarning",
    "DigitalHubSink",
    "LocalStore",
    "LocalStoreError",
    "MemorySink",
    "MetricLimitWarning",
    "MetricNameWarning",
    "MetricRecorder",
    "NonFiniteMetricWarning",
    "NonNumericMetricWarning",
    "PermanentError",
    "RunNotFoundError",
    "__version__",
    "safe_name",
]
