"""Every default a user can change, in one place: the recorder, the adapters and the CLI read them here.

The environment variables a run reads are named here too.
"""

from __future__ import annotations

from typing import Final

DEFAULT_MAX_LIST_VALUES: Final = 50_000  # values per list metric per execution (the platform's cap)
DEFAULT_FLUSH_INTERVAL_S: Final = 2.0  # seconds between two rounds of the delivery worker
DEFAULT_FLUSH_EVENTS: Final = 4096  # log_step calls that wake the worker before its interval ends
DEFAULT_CLOSE_TIMEOUT_S: Final = 30.0  # how long close() waits for delivery
DEFAULT_REQUEST_TIMEOUT_S: Final = 30.0  # each HTTP request to the platform

STORE_ENV: Final = "CRAFT_CALLBACKS_STORE"  # the local store's file
RUN_ID_ENV: Final = "CRAFT_CALLBACKS_RUN_ID"  # continue this local run
RUN_NAME_ENV: Final = "CRAFT_CALLBACKS_RUN_NAME"  # the run's name (its pipeline name)
DISABLE_ENV: Final = "CRAFT_CALLBACKS_DISABLED"  # set to 1: the adapters record nothing
