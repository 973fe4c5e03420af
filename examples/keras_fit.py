"""Train a tiny Keras classifier and record it with CraftAiKerasCallback.

Runs offline on a CPU in seconds, on the torch backend by default (set
KERAS_BACKEND to jax or tensorflow to change it). Outside a Craft AI execution
the metrics go to the local store (./craft_metrics/metrics.db); inside one, to
the platform. Then try: ``craft-callbacks runs``.

Resume: ``BackupAndRestore`` backs the training up in ./keras_backup at each
epoch's end, and the callback keeps its run id there. Stop the script
(Ctrl-C, or kill it) during training and run it again: Keras goes on from the
last epoch backed up, and the metrics go on in the same run, each step once.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

from craft_callbacks.keras import CraftAiKerasCallback


def main(learning_rate: float = 0.05, epochs: int = 8, backup_dir: str = "keras_backup") -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 8)).astype("float32")
    y = (x[:, :4].sum(axis=1) > x[:, 4:].sum(axis=1)).astype("float32")
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=["binary_accuracy"],
    )
    backup = keras.callbacks.BackupAndRestore(backup_dir)  # removed when fit ends
    callback = CraftAiKerasCallback(
        log_every_n_steps=5,
        hyperparameters={"dataset": "toy-sums"},
        pipeline_name="keras-classifier",
        backup_dir=backup,  # the run id is kept with the backup: a restored fit continues the run
    )
    with warnings.catch_warnings():  # numpy 2 about Keras's own torch tensors: not for a demo
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword")
        model.fit(
            x, y, batch_size=32, epochs=epochs, validation_split=0.2, callbacks=[backup, callback], verbose=0
        )
        # after fit: scalars eval_loss, eval_binary_accuracy (the callback must be passed)
        model.evaluate(x[:256], y[:256], callbacks=[callback], verbose=0)


if __name__ == "__main__":
    main()
