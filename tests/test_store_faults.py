"""A damaged, foreign, newer, altered, vanished or full local store: one clear message, no loss, no stall.

Every fault is made for real on a real store: bytes overwritten, tables
altered with SQLite, the folder deleted while a recorder writes into it, a
full disk (a file size limit), a file its reader may not open. The rules:

* a store the user chose (``LocalStore(path)``, ``store_path=``,
  ``CRAFT_CALLBACKS_STORE``) that cannot be used is one ``LocalStoreError``
  when it is opened, before training, and the file is left as it was;
* the default store never stops a recording: one warning names the store
  the metrics go to instead (beside it, or in a temporary folder);
* a store deleted during a run is re-created with every value of the run;
* the CLI answers every fault with one line on stderr and status 2.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from craft_callbacks import DeliveryWarning, LocalStore, LocalStoreError, MetricRecorder
from craft_callbacks.cli import main
from craft_callbacks.sinks.local_store import SCHEMA_VERSION

DEFAULT = Path("craft_metrics") / "metrics.db"
BESIDE = Path("craft_metrics") / "metrics.1.db"
PAGE = 4096


def healthy_store(path: Path) -> str:
    """A store with one run written in many small transactions (many pages), all in the main file."""
    store = LocalStore(path)
    run = store.start_execution("faults", hyperparameters={"lr": 0.1})
    for write in range(300):
        steps = list(range(write * 10, write * 10 + 10))
        store.write(run, lists=[("loss", steps, [1.0 / (1 + step) for step in steps])], scalars={"loss": 0.5})
    store.close()
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=DELETE")  # checkpoints the WAL into the file and removes it
    return run


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(data)


def alter(path: Path, statement: str) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute(statement)
        db.commit()


def garbage_header(path: Path) -> None:
    healthy_store(path)
    overwrite(path, 0, b"not sqlite" * 10)


def garbage_in_the_middle(path: Path) -> None:
    healthy_store(path)
    pages = path.stat().st_size // PAGE
    assert pages > 10
    overwrite(path, pages // 2 * PAGE, b"\x5a" * PAGE)


def foreign(path: Path) -> None:
    alter(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")


def newer(path: Path) -> None:
    healthy_store(path)
    alter(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")


def column_renamed(path: Path) -> None:
    healthy_store(path)
    alter(path, "ALTER TABLE executions RENAME COLUMN status TO state")


def table_dropped(path: Path) -> None:
    healthy_store(path)
    alter(path, "DROP TABLE metrics")


# Each damage, and what the one message about it says.
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbage header": (garbage_header, "not a craft_callbacks metrics store"),
    "garbage in the middle": (garbage_in_the_middle, "is damaged"),
    "foreign database": (foreign, "not a craft_callbacks metrics store"),
    "newer schema": (newer, "newer craft_callbacks"),
    "column renamed": (column_renamed, "column executions.status is missing"),
    "table dropped": (table_dropped, "table metrics is missing"),
}


def ours(caught: list[warnings.WarningMessage]) -> list[str]:
    """The messages of this package's warnings among those caught."""
    return [str(w.message) for w in caught if str(w.message).startswith("craft_callbacks:")]


@contextmanager
def recording_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def lists_in(path: Path, name: str) -> list[list[Any]]:
    return [row["values"] for row in LocalStore(path).get_list_metrics(name=name)]


# -- a store the user chose -------------------------------------------------------------------


@pytest.mark.parametrize("fault", DAMAGE)
@pytest.mark.parametrize("opened_by", ["LocalStore(path)", "store_path=", "CRAFT_CALLBACKS_STORE"])
def test_a_bad_store_the_user_chose_is_one_clear_error_and_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, opened_by: str
) -> None:
    path = tmp_path / "chosen" / "metrics.db"
    path.parent.mkdir()
    damage, says = DAMAGE[fault]
    damage(path)
    before = path.read_bytes()
    with recording_warnings() as caught, pytest.raises(LocalStoreError) as raised:
        if opened_by == "LocalStore(path)":
            LocalStore(path)
        elif opened_by == "store_path=":
            MetricRecorder(store_path=path)
        else:
            monkeypatch.setenv("CRAFT_CALLBACKS_STORE", str(path))
            MetricRecorder()
    message = str(raised.value)
    assert str(path) in message and says in message
    assert "\n" not in message
    assert ours(caught) == []
    assert path.read_bytes() == before
    assert [entry.name for entry in path.parent.iterdir()] == ["metrics.db"]


@pytest.mark.parametrize("adapter", ["huggingface", "lightning", "keras"])
def test_an_adapter_given_a_bad_store_raises_at_construction(tmp_path: Path, adapter: str) -> None:
    path = tmp_path / "metrics.db"
    garbage_in_the_middle(path)
    with pytest.raises(LocalStoreError, match="is damaged"):
        ADAPTERS[adapter](store_path=path)


def test_a_new_store_carries_the_schema_version(tmp_path: Path) -> None:
    LocalStore(tmp_path / "metrics.db").close()
    with closing(sqlite3.connect(tmp_path / "metrics.db")) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# -- the default store -------------------------------------------------------------------------


@pytest.mark.parametrize("fault", DAMAGE)
def test_a_bad_default_store_is_left_alone_and_the_run_goes_beside_it(fault: str) -> None:
    DEFAULT.parent.mkdir()
    damage, says = DAMAGE[fault]
    damage(DEFAULT)
    before = DEFAULT.read_bytes()
    with recording_warnings() as caught, MetricRecorder() as recorder:
        recorder.log_step({"loss": 1.0})
        recorder.log_step({"loss": 0.5})
    [warning] = ours(caught)
    assert str(DEFAULT) in warning and says in warning
    assert f"go to {BESIDE} instead" in warning
    assert recorder.sink.path == BESIDE
    assert lists_in(BESIDE, "loss") == [[1.0, 0.5]]
    assert DEFAULT.read_bytes() == before


def test_later_runs_join_the_store_beside_the_bad_default() -> None:
    DEFAULT.parent.mkdir()
    garbage_in_the_middle(DEFAULT)
    for loss in (1.0, 2.0):
        with pytest.warns(DeliveryWarning, match=f"go to {BESIDE} instead"):
            recorder = MetricRecorder()
        with recorder:
            recorder.log_step({"loss": loss})
    assert lists_in(BESIDE, "loss") == [[1.0], [2.0]]


def test_a_file_where_the_default_folder_goes_sends_the_run_to_a_temporary_folder() -> None:
    Path("craft_metrics").write_text("a file, not the store's folder")
    with recording_warnings() as caught, MetricRecorder() as recorder:
        recorder.log_step({"loss": 1.0})
    where = recorder.sink.path
    try:
        [warning] = ours(caught)
        assert "craft_metrics" in warning and f"go to {where} instead" in warning
        assert Path(tempfile.gettempdir()) in where.parents
        assert lists_in(where, "loss") == [[1.0]]
        assert Path("craft_metrics").read_text() == "a file, not the store's folder"
    finally:
        shutil.rmtree(where.parent)


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's own are private to this user)."""
    folder = Path(tempfile.mkdtemp(prefix="craft-faults-"))
    folder.chmod(0o755)
    yield folder
    folder.chmod(0o755)
    shutil.rmtree(folder)


def unprivileged(imports: str, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` where file permissions apply: as ``nobody`` when the tests run as root.

    The interpreter starts as this user and drops to ``nobody`` once ``imports`` ran (the
    interpreter's own files may be private to this user), with the standard modules
    imported lazily on the way (argparse's ``locale``).
    """
    drop = (
        "import locale, os\nif os.geteuid() == 0:\n    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
    )
    script = f"{textwrap.dedent(imports)}\n{drop}\n{textwrap.dedent(code)}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "TMPDIR": tempfile.gettempdir()}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_an_unwritable_working_folder_sends_the_run_to_a_temporary_folder(shared_folder: Path) -> None:
    shared_folder.chmod(0o555)
    imports = "import json, warnings\nfrom craft_callbacks import LocalStore, MetricRecorder"
    code = textwrap.dedent(
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with MetricRecorder() as recorder:
                recorder.log_step({"loss": 1.0})
        where = recorder.sink.path
        values = [row["values"] for row in LocalStore(where).get_list_metrics(name="loss")]
        texts = [str(w.message) for w in caught]
        print(json.dumps({"where": str(where), "values": values, "warnings": texts}))
        """
    )
    done = unprivileged(imports, code, shared_folder)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    where = Path(result["where"])
    try:
        assert Path(tempfile.gettempdir()) in where.parents
        assert result["values"] == [[1.0]]
        [warning] = [text for text in result["warnings"] if text.startswith("craft_callbacks:")]
        assert "craft_metrics" in warning and f"go to {where} instead" in warning
        assert not (shared_folder / "craft_metrics").exists()
    finally:
        shutil.rmtree(where.parent)


# -- adapters with their default arguments never raise, and their training runs -----------------


def huggingface_training(output: Path) -> tuple[MetricRecorder, str, int]:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from craft_callbacks.huggingface import CraftAiCallback

    torch.manual_seed(0)
    ids = torch.randint(1, 32, (16, 6))
    data = [{"input_ids": row, "labels": int(row[0] > 16)} for row in ids]
    config = BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=8,
        num_labels=2,
    )
    callback = CraftAiCallback()
    arguments = TrainingArguments(
        output_dir=str(output),
        max_steps=4,
        logging_steps=1,
        per_device_train_batch_size=4,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    Trainer(
        model=BertForSequenceClassification(config), args=arguments, train_dataset=data, callbacks=[callback]
    ).train()
    assert callback.recorder is not None
    return callback.recorder, "loss", 4


def lightning_training(output: Path) -> tuple[MetricRecorder, str, int]:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from craft_callbacks.lightning import CraftAiLogger

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, index: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(32, 4), torch.randn(32, 1)), batch_size=8)
    logger = CraftAiLogger()
    trainer = L.Trainer(
        max_epochs=2,
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), data)  # with Lightning's checkpoints, written beside the store
    assert logger.experiment is not None
    return logger.experiment, "train_loss", 8


def keras_training(output: Path) -> tuple[MetricRecorder, str, int]:
    import keras
    import numpy as np

    from craft_callbacks.keras import CraftAiKerasCallback

    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callback = CraftAiKerasCallback()
    model.fit(
        rng.normal(size=(32, 4)),
        rng.normal(size=(32, 1)),
        epochs=2,
        batch_size=8,
        verbose=0,
        callbacks=[callback],
    )
    assert callback.recorder is not None
    return callback.recorder, "loss", 2


def adapter(module: str, name: str) -> Callable[..., Any]:
    def build(**options: Any) -> Any:
        return getattr(__import__(f"craft_callbacks.{module}", fromlist=[name]), name)(**options)

    return build


ADAPTERS: dict[str, Callable[..., Any]] = {
    "huggingface": adapter("huggingface", "CraftAiCallback"),
    "lightning": adapter("lightning", "CraftAiLogger"),
    "keras": adapter("keras", "CraftAiKerasCallback"),
}
TRAININGS: dict[str, Callable[[Path], tuple[MetricRecorder, str, int]]] = {
    "huggingface": huggingface_training,
    "lightning": lightning_training,
    "keras": keras_training,
}


@pytest.mark.parametrize("fault", ["damaged store", "a file named craft_metrics"])
@pytest.mark.parametrize("framework", TRAININGS)
def test_an_adapter_with_default_arguments_trains_and_records_despite_a_bad_default_store(
    tmp_path: Path, framework: str, fault: str
) -> None:
    if fault == "damaged store":
        DEFAULT.parent.mkdir()
        garbage_in_the_middle(DEFAULT)
    else:
        Path("craft_metrics").write_text("a file, not the store's folder")
    with recording_warnings() as caught:
        recorder, name, count = TRAININGS[framework](tmp_path / "out")
    where = recorder.sink.path
    try:
        [warning] = ours(caught)
        assert f"go to {where} instead" in warning
        assert where == BESIDE if fault == "damaged store" else Path(tempfile.gettempdir()) in where.parents
        [values] = lists_in(where, name)
        assert len(values) == count
    finally:
        if fault != "damaged store":
            shutil.rmtree(where.parent)


# -- a store deleted or replaced while a run records ---------------------------------------------


def test_a_store_deleted_mid_run_is_recreated_with_every_value_of_the_run() -> None:
    with recording_warnings() as caught:
        recorder = MetricRecorder(hyperparameters={"lr": 0.01})
        for step in range(5):
            recorder.log_step({"loss": 1.0 / (step + 1), "acc": step / 10}, step=step * 10)
        assert recorder.flush(timeout=30)
        shutil.rmtree("craft_metrics")
        for step in range(5, 10):
            recorder.log_step({"loss": 1.0 / (step + 1), "acc": step / 10}, step=step * 10)
        recorder.log_final({"f1": 0.75})
        recorder.close()
    [warning] = ours(caught)
    assert str(DEFAULT) in warning and "deleted" in warning and recorder.execution_id in warning
    store = LocalStore()
    assert store.path == DEFAULT
    run = store.find_run(recorder.execution_id)
    assert run["status"] == "success" and run["hyperparameters"] == {"lr": 0.01}
    assert store.list_series(run["execution_id"], "loss") == [
        (step * 10, 1.0 / (step + 1)) for step in range(10)
    ]
    assert lists_in(DEFAULT, "acc") == [[step / 10 for step in range(10)]]
    scalars = {row["name"]: row["value"] for row in store.get_metrics()}
    assert scalars == {"loss": 0.1, "acc": 0.9, "f1": 0.75}
    assert "nothing dropped" in recorder.summary()


def test_a_store_deleted_twice_keeps_every_value_and_says_so_each_time() -> None:
    with recording_warnings() as caught:
        recorder = MetricRecorder()
        for loss in (3.0, 2.0, 1.0):
            recorder.log_step({"loss": loss})
            assert recorder.flush(timeout=30)
            if loss > 1.0:
                shutil.rmtree("craft_metrics")
        recorder.close()
    assert len(ours(caught)) == 2
    assert lists_in(DEFAULT, "loss") == [[3.0, 2.0, 1.0]]


def test_a_store_deleted_before_the_first_delivery_keeps_the_run() -> None:
    with recording_warnings() as caught:
        recorder = MetricRecorder(pipeline_name="early")
        shutil.rmtree("craft_metrics")
        recorder.log_step({"loss": 1.0})
        recorder.log_step({"loss": 0.5})
        recorder.close()
    assert len(ours(caught)) == 1
    [run] = LocalStore().executions()
    assert run["execution_id"] == recorder.execution_id and run["pipeline_name"] == "early"
    assert lists_in(DEFAULT, "loss") == [[1.0, 0.5]]


def test_a_store_replaced_mid_run_keeps_both_its_runs_and_ours(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    with recording_warnings() as caught:
        recorder = MetricRecorder(store_path=path)
        recorder.log_step({"loss": 1.0})
        assert recorder.flush(timeout=30)
        path.unlink()
        other = LocalStore(path)  # another process made a new store at the path meanwhile
        theirs = other.start_execution("other")
        other.write(theirs, lists=[("loss", [0], [9.0])])
        recorder.log_step({"loss": 0.5})
        recorder.close()
    [warning] = ours(caught)
    assert str(path) in warning and recorder.execution_id in warning
    store = LocalStore(path)
    assert {run["execution_id"] for run in store.executions()} == {theirs, recorder.execution_id}
    assert store.list_series(recorder.execution_id, "loss") == [(0, 1.0), (1, 0.5)]
    assert store.list_series(theirs, "loss") == [(0, 9.0)]


def test_a_store_that_cannot_be_recreated_moves_to_a_temporary_folder_with_the_run() -> None:
    with recording_warnings() as caught:
        recorder = MetricRecorder()
        recorder.log_step({"loss": 1.0})
        assert recorder.flush(timeout=30)
        shutil.rmtree("craft_metrics")
        Path("craft_metrics").write_text("in the way")
        recorder.log_step({"loss": 0.5})
        recorder.close()
    where = recorder.sink.path
    try:
        [warning] = ours(caught)
        assert str(DEFAULT) in warning and f"new store was made at {where}" in warning
        assert Path(tempfile.gettempdir()) in where.parents
        assert lists_in(where, "loss") == [[1.0, 0.5]]
    finally:
        shutil.rmtree(where.parent)


def test_the_summary_names_the_store_the_run_moved_to() -> None:
    with recording_warnings():
        recorder = MetricRecorder()
        recorder.log_step({"loss": 1.0})
        assert recorder.flush(timeout=30)
        shutil.rmtree("craft_metrics")
        Path("craft_metrics").write_text("in the way")
        recorder.log_step({"loss": 0.5})
        recorder.close()
    where = recorder.sink.path
    shutil.rmtree(where.parent)
    assert Path(tempfile.gettempdir()) in where.parents
    assert str(where) in recorder.summary() and str(DEFAULT) not in recorder.summary()


# -- a local fault while recording is a LocalStoreError, and close does not wait it out ----------

FULL_DISK = """
import json, os, resource, signal, sys, time, warnings
from craft_callbacks import LocalStore, LocalStoreError, MetricRecorder

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
path = sys.argv[1]


def disk_full():
    biggest = max(os.path.getsize(path + suffix) for suffix in ("", "-wal") if os.path.exists(path + suffix))
    resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + 65536, resource.RLIM_INFINITY))
"""


def test_a_full_disk_is_a_local_store_error(tmp_path: Path) -> None:
    code = FULL_DISK + textwrap.dedent(
        """
        store = LocalStore(path)
        run = store.start_execution()
        disk_full()
        try:
            store.write(run, lists=[("loss", list(range(40_000)), [i / 3 for i in range(40_000)])])
        except LocalStoreError as error:
            print("LocalStoreError:", error)
        """
    )
    path = tmp_path / "metrics.db"
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"LocalStoreError: cannot write to the metrics store {path}: "), done.stdout


def test_close_does_not_wait_out_its_timeout_for_a_full_disk(tmp_path: Path) -> None:
    code = FULL_DISK + textwrap.dedent(
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            recorder = MetricRecorder(store_path=path, close_timeout=20)
            recorder.log_step({"loss": 0.0})
            recorder.flush()
            disk_full()
            for step in range(40_000):
                recorder.log_step({"loss": step / 3})
            started = time.monotonic()
            recorder.close()
            took = time.monotonic() - started
        print(json.dumps({"took": took, "warnings": [str(w.message) for w in caught]}))
        """
    )
    path = tmp_path / "metrics.db"
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert any("LocalStoreError" in text and str(path) in text for text in result["warnings"])
    assert result["took"] < 5, result


# -- the command line: one line and status 2 for every fault of the store -------------------------

COMMANDS: dict[str, list[str]] = {
    "runs": ["runs"],
    "show": ["show", "latest"],
    "compare": ["compare", "latest", "latest"],
    "plot": ["plot", "latest", "-o", "out.png"],
    "export": ["export", "latest"],
    "sync": ["sync"],
}
STORE_FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    **DAMAGE,
    "missing": (lambda path: None, "no metrics store at"),
    "a directory": (Path.mkdir, "is a directory"),
}


def said_about(command: str, path: Path, says: str) -> tuple[str, str]:
    """What the one line names: the store and its fault (``sync`` looks for the spool beside it)."""
    if command == "sync":
        return str(path.parent / "spool.db"), "no spool at"
    return str(path), says


@pytest.mark.parametrize("fault", STORE_FAULTS)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_a_store_fault_with_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, fault: str
) -> None:
    path = tmp_path / "metrics.db"
    damage, says = STORE_FAULTS[fault]
    damage(path)
    before = path.read_bytes() if path.is_file() else None
    with recording_warnings() as caught:
        status = main([*COMMANDS[command], "--store", str(path)])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"craft-callbacks {command}: "), err
    where, what = said_about(command, path, says)
    assert where in err and what in err
    assert ours(caught) == []
    assert (path.read_bytes() if path.is_file() else None) == before
    assert not Path("out.png").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_a_damaged_default_store_rather_than_reading_another(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    DEFAULT.parent.mkdir()
    garbage_in_the_middle(DEFAULT)
    BESIDE.parent.mkdir(exist_ok=True)
    healthy_store(BESIDE)
    assert main(COMMANDS[command]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    where, what = said_about(command, DEFAULT, "is damaged")
    assert where in err and what in err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_an_unreadable_store_with_one_line_and_status_2(
    shared_folder: Path, command: str
) -> None:
    path = shared_folder / "metrics.db"
    healthy_store(path)
    path.chmod(0o000)
    args = [*COMMANDS[command], "--store", str(path)]
    imports = (
        "import sys\nimport craft_callbacks.cli, craft_callbacks.cli.export, craft_callbacks.delivery.sync"
    )
    done = unprivileged(imports, f"sys.exit(craft_callbacks.cli.main({args!r}))", shared_folder)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    where, what = said_about(command, path, "Permission denied")
    assert where in done.stderr and what in done.stderr
