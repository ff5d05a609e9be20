from __future__ import annotations

import pandas as pd
import pytest

from observml import datasets


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: datasets.pump_sensors(300, 4, seed=3), id="pump_sensors"),
        pytest.param(lambda: datasets.fault_table(300, seed=3), id="fault_table"),
        pytest.param(lambda: datasets.seasonal_series(300, seed=3), id="seasonal_series"),
        pytest.param(lambda: datasets.event_log(30, seed=3), id="event_log"),
    ],
)
def test_generators_are_deterministic(make) -> None:
    pd.testing.assert_frame_equal(make(), make())


def test_pump_sensors_faults_only_in_second_half() -> None:
    frame = datasets.pump_sensors(400, 6, seed=0)
    assert list(frame.columns[:2]) == ["ds", "sensor_00"]
    assert frame["fault"].iloc[:200].sum() == 0
    kinds = set(frame["fault_type"].iloc[200:])
    assert {"drift", "step", "spike", "normal"} <= kinds
    assert (frame["fault"] == (frame["fault_type"] != "normal")).all()


def test_pump_sensors_clean_has_no_faults() -> None:
    frame = datasets.pump_sensors(200, 3, faults=False)
    assert frame["fault"].sum() == 0
    assert frame.shape == (200, 6)


def test_pump_sensors_are_correlated() -> None:
    frame = datasets.pump_sensors(1000, 6, faults=False)
    corr = frame.filter(like="sensor_").corr().abs().to_numpy()
    assert corr[~pd.DataFrame(corr).eq(1.0).to_numpy()].max() > 0.5


def test_fault_table_classes_persist() -> None:
    frame = datasets.fault_table(1000, seed=0, mean_run=40)
    assert set(frame["fault"]) <= set(datasets.FAULT_CLASSES)
    changes = (frame["fault"] != frame["fault"].shift()).sum()
    assert changes < 100  # runs, not noise
    faulted = frame.loc[frame["fault"] == "LLL", "Ia"].abs().mean()
    normal = frame.loc[frame["fault"] == "normal", "Ia"].abs().mean()
    assert faulted > 3 * normal


def test_seasonal_series_anomalies_in_last_third() -> None:
    frame = datasets.seasonal_series(600, n_anomalies=5)
    assert frame["anomaly"].sum() == 5
    assert not frame["anomaly"].iloc[:400].any()


def test_event_log_deviations() -> None:
    log = datasets.event_log(300, seed=0, deviation_rate=0.2)
    cases = log.groupby("case_id")
    deviant = cases["deviant"].first()
    assert 0.1 < deviant.mean() < 0.3
    normal_case = log[log["case_id"] == deviant[~deviant].index[0]]
    assert normal_case["activity"].iloc[0] == datasets.PROCESS_STEPS[0]
    assert normal_case["activity"].iloc[-1] == datasets.PROCESS_STEPS[-1]
    assert cases["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()
