"""The local model cache: one download per run, and the same trust checks on every load."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from observml import ExperimentHub, InMemoryDataStreamPlugin, InMemoryMLOpsPlugin
from observml.config import GlobalSection, HubConfig
from observml.errors import UntrustedModelError
from observml.store.cache import CACHE_DIR, SNAPSHOT_SUFFIX, ModelCache
from observml.store.signing import ModelSigner
from observml.store.snapshots import SNAPSHOT_FILE

KEY_A = "a-key-for-hub-a-0123456789abcdef"
KEY_B = "b-key-for-hub-b-0123456789abcdef"


class CountingMLOps(InMemoryMLOpsPlugin):
    """The memory store, counting the model folders it hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.downloads = 0

    def download_artifacts(self, run_id: str, artifact_path: str, dst_dir: str) -> str:
        self.downloads += 1
        return super().download_artifacts(run_id, artifact_path, dst_dir)


def sensors(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=["temp", "pressure", "flow"])


def hub_with(mlops: InMemoryMLOpsPlugin, key: str) -> ExperimentHub:
    config = HubConfig(plugins={}, global_=GlobalSection(model_key=key))
    hub = ExperimentHub(config=config, job_isolation="thread")
    hub.register_plugin(mlops)
    return hub


@pytest.fixture
def store() -> CountingMLOps:
    mlops = CountingMLOps()
    with hub_with(mlops, KEY_A) as hub:
        hub.register_plugin(InMemoryDataStreamPlugin())
        hub.create_experiment("pump", "fault_detection", {"create_model": {"model": "pca"}})
        hub.train("pump", data=sensors(300), wait=True)
    mlops.downloads = 0
    return mlops


def restore_and_predict(mlops: InMemoryMLOpsPlugin, key: str = KEY_A) -> pd.DataFrame:
    with hub_with(mlops, key) as hub:
        hub.load("pump")
        result: pd.DataFrame = hub.predict("pump", data=sensors(10, seed=3))
    return result


def cached_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / ".observml" / CACHE_DIR).rglob("*") if p.is_file())


def test_second_restore_of_a_version_downloads_nothing(
    store: CountingMLOps, tmp_path: Path
) -> None:
    first = restore_and_predict(store)
    assert store.downloads == 1
    assert cached_files(tmp_path)
    second = restore_and_predict(store)
    assert store.downloads == 1
    pd.testing.assert_frame_equal(first, second)


def test_altered_cached_copy_is_refused_and_fetched_again(
    store: CountingMLOps, tmp_path: Path
) -> None:
    expected = restore_and_predict(store)
    [skops] = [p for p in cached_files(tmp_path) if p.suffix == ".skops"]
    data = bytearray(skops.read_bytes())
    data[len(data) // 2] ^= 0x01
    skops.write_bytes(bytes(data))
    again = restore_and_predict(store)  # the altered copy is not loaded: a fresh one is
    assert store.downloads == 2
    pd.testing.assert_frame_equal(expected, again)
    assert skops.read_bytes() != bytes(data)


def test_cached_copy_is_still_checked_against_the_hubs_key(
    store: CountingMLOps, tmp_path: Path
) -> None:
    restore_and_predict(store)
    with pytest.raises(UntrustedModelError, match=r"pump version 1\): .*signed by another key"):
        restore_and_predict(store, key=KEY_B)
    assert store.downloads == 2  # the copy failed its check, so the store was asked again
    assert not cached_files(tmp_path)  # and the copy that fails is not kept


def test_cache_folder_refuses_a_run_id_that_is_a_path(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    assert cache.folder("0a1b-2c", "model/../x") == tmp_path / "0a1b-2c" / "model" / "x"
    assert not cache.accepts("../etc")
    with pytest.raises(ValueError, match="run id '../etc' is not a plain identifier"):
        cache.folder("../etc", "model")


# -- the snapshot of the restored state (observml.store.snapshots) ------------------------------
class LeavesAMark:
    """A pickle that, when unpickled, creates a file: what an attacker would plant."""

    def __init__(self, mark: Path) -> None:
        self.mark = mark

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.mark), "unpickled"))


def snapshot_file(tmp_path: Path) -> Path:
    [found] = [p for p in cached_files(tmp_path) if p.name == SNAPSHOT_FILE]
    return found


def test_second_restore_reads_the_signed_snapshot_not_the_model_files(
    store: CountingMLOps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = restore_and_predict(store)
    assert snapshot_file(tmp_path).parent.name == "model" + SNAPSHOT_SUFFIX

    def no_skops(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model files were read again")

    monkeypatch.setattr("observml.store.folders.read_state", no_skops)
    second = restore_and_predict(store)
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("signed_by", [None, KEY_B], ids=["altered", "another-key"])
def test_a_snapshot_not_signed_by_the_hubs_key_is_never_unpickled(
    store: CountingMLOps, tmp_path: Path, signed_by: str | None
) -> None:
    expected = restore_and_predict(store)
    planted = snapshot_file(tmp_path)
    mark = tmp_path / "unpickled.txt"
    planted.write_bytes(pickle.dumps({"detector_": LeavesAMark(mark)}))
    if signed_by is not None:
        ModelSigner(signed_by.encode()).sign(planted.parent)
    again = restore_and_predict(store)  # read from the model folder instead
    assert not mark.exists()
    pd.testing.assert_frame_equal(expected, again)
    assert ModelSigner(KEY_A.encode()).check(planted.parent) is None  # written anew, signed
