"""Synthetic plant data with known faults, for the demo and the unit tests.

Every generator is deterministic for a given ``seed`` and returns a DataFrame whose label
columns say where the faults are, so a test can check what a model finds:

* :func:`pump_sensors`: correlated pump sensors (hourly ``ds``) with drift, step and spike
  faults; ``fault`` (0/1) and ``fault_type`` label them.
* :func:`fault_table`: a three-phase line's currents and voltages with labelled fault classes
  that persist for a while (``fault``: ``normal``, ``LG``, ``LL``, ``LLG``, ``LLL``).
* :func:`seasonal_series`: a daily-seasonal series with trend and injected anomalies.
* :func:`event_log`: a production event log; some cases skip, repeat or swap steps.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

__all__ = [
    "FAULT_CLASSES",
    "PROCESS_STEPS",
    "event_log",
    "fault_table",
    "pump_sensors",
    "seasonal_series",
]

#: Classes of :func:`fault_table`, normal first.
FAULT_CLASSES: Final = ("normal", "LG", "LL", "LLG", "LLL")
#: The happy path of :func:`event_log`.
PROCESS_STEPS: Final = (
    "Receive order",
    "Cut material",
    "Turn & mill",
    "Heat treat",
    "Grind",
    "Inspect",
    "Ship",
)


def pump_sensors(
    n_rows: int = 2000,
    n_sensors: int = 8,
    *,
    seed: int = 0,
    faults: bool = True,
    start: str = "2024-01-01",
    freq: str = "h",
) -> pd.DataFrame:
    """Return correlated pump sensor readings with drift, step and spike faults.

    Sensors follow three latent operating factors (load, temperature, vibration) plus noise,
    so they are correlated as real plant sensors are. With ``faults``, the second half holds a
    slow drift on one sensor, a step on two sensors, and isolated spikes; the first half is
    clean, which makes it the natural training window.

    Args:
        n_rows: Rows (one per ``freq``).
        n_sensors: Sensor columns ``sensor_00`` ...
        seed: Random seed.
        faults: Inject faults into the second half.
        start: First timestamp.
        freq: Sampling period (pandas offset alias).

    Returns:
        Columns ``ds``, ``sensor_00``..., ``fault`` (0/1) and ``fault_type``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows)
    load = np.sin(2 * np.pi * t / 24) + 0.3 * rng.standard_normal(n_rows)
    temperature = np.cumsum(rng.normal(0, 0.05, n_rows))
    temperature -= np.convolve(temperature, np.ones(48) / 48, mode="same")
    vibration = rng.standard_normal(n_rows)
    latent = np.column_stack([load, temperature, vibration])
    mixing = rng.normal(0, 1, (3, n_sensors))
    values = latent @ mixing + 0.2 * rng.standard_normal((n_rows, n_sensors))
    values = 50 + 5 * values
    kind = np.array(["normal"] * n_rows, dtype=object)
    if faults and n_rows >= 40:
        half = n_rows // 2
        drift = slice(half, half + n_rows // 8)
        length = drift.stop - drift.start
        values[drift, 0] += np.linspace(0, 25, length)
        kind[drift] = "drift"
        step = slice(half + n_rows // 4, half + n_rows // 4 + n_rows // 16)
        values[step, 1 % n_sensors] += 30
        values[step, 2 % n_sensors] -= 30
        kind[step] = "step"
        spikes = rng.choice(
            np.arange(half, n_rows)[kind[half:] == "normal"],
            size=max(3, n_rows // 200),
            replace=False,
        )
        values[spikes, rng.integers(0, n_sensors, spikes.size)] += 60
        kind[spikes] = "spike"
    frame = pd.DataFrame(values, columns=[f"sensor_{j:02d}" for j in range(n_sensors)])
    frame.insert(0, "ds", pd.date_range(start, periods=n_rows, freq=freq))
    frame["fault"] = (kind != "normal").astype(int)
    frame["fault_type"] = kind.astype(str)
    return frame


def fault_table(
    n_rows: int = 1500, *, seed: int = 0, mean_run: int = 40, start: str = "2024-01-01"
) -> pd.DataFrame:
    """Return a three-phase line's measurements with labelled, persistent fault classes.

    The class follows a Markov chain that stays in a state for about ``mean_run`` rows (so HMM
    and Markov-chain models have a sequence to use). Faults raise the currents of the faulted
    phases and sag their voltages, with noise, so classes overlap a little.

    Returns:
        Columns ``ds``, ``Ia``, ``Ib``, ``Ic``, ``Va``, ``Vb``, ``Vc`` and ``fault``.
    """
    rng = np.random.default_rng(seed)
    k = len(FAULT_CLASSES)
    runs = rng.geometric(1 / mean_run, size=n_rows // max(mean_run // 4, 1) + 2)
    labels = np.empty(len(runs), dtype=int)
    labels[0] = 0
    for i in range(1, len(runs)):  # each run moves to another state
        labels[i] = (labels[i - 1] + rng.integers(1, k)) % k
    states = np.repeat(labels, runs)[:n_rows]
    if len(states) < n_rows:
        states = np.concatenate([states, np.full(n_rows - len(states), labels[-1])])
    angle = 2 * np.pi * np.arange(n_rows) / 24
    currents = np.column_stack([60 * np.sin(angle + s) for s in (0, 2.094, -2.094)])
    voltages = np.column_stack([0.6 * np.sin(angle + s) for s in (0, 2.094, -2.094)])
    faulted = {1: (0,), 2: (0, 1), 3: (0, 1), 4: (0, 1, 2)}  # phases each fault class hits
    for state, phases in faulted.items():
        rows = states == state
        for phase in phases:
            currents[rows, phase] *= 8 if state == 3 else 6
            voltages[rows, phase] *= 0.4 if state == 2 else 0.1
    currents += rng.normal(0, 15, currents.shape)
    voltages += rng.normal(0, 0.05, voltages.shape)
    frame = pd.DataFrame(
        np.column_stack([currents, voltages]), columns=["Ia", "Ib", "Ic", "Va", "Vb", "Vc"]
    )
    frame.insert(0, "ds", pd.date_range(start, periods=n_rows, freq="h"))
    frame["fault"] = np.array(FAULT_CLASSES)[states]
    return frame


def seasonal_series(
    n_rows: int = 24 * 60,
    *,
    period: int = 24,
    seed: int = 0,
    n_anomalies: int = 8,
    start: str = "2024-01-01",
    freq: str = "h",
) -> pd.DataFrame:
    """Return a series with trend, a seasonal cycle of ``period`` rows and injected anomalies.

    Returns:
        Columns ``ds``, ``y`` and ``anomaly`` (True at the injected points, all in the last
        third so the first two thirds can train a model).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows)
    y = 100 + 0.02 * t + 10 * np.sin(2 * np.pi * t / period) + rng.normal(0, 1, n_rows)
    anomaly = np.zeros(n_rows, dtype=bool)
    if n_anomalies:
        where = rng.choice(np.arange(2 * n_rows // 3, n_rows), size=n_anomalies, replace=False)
        y[where] += rng.choice([-1, 1], n_anomalies) * rng.uniform(8, 15, n_anomalies)
        anomaly[where] = True
    return pd.DataFrame(
        {"ds": pd.date_range(start, periods=n_rows, freq=freq), "y": y, "anomaly": anomaly}
    )


def event_log(
    n_cases: int = 200, *, seed: int = 0, deviation_rate: float = 0.1, start: str = "2024-01-01"
) -> pd.DataFrame:
    """Return a production event log; ``deviation_rate`` of the cases deviate.

    Conforming cases run :data:`PROCESS_STEPS` in order, with "Grind" repeated after a failed
    "Inspect" now and then (rework is allowed). Deviating cases skip "Inspect", swap two steps,
    or insert an unknown "Manual fix".

    Returns:
        Columns ``case_id``, ``activity``, ``timestamp``, ``resource`` and ``deviant`` (True on
        every event of a deviating case).
    """
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, pd.Timestamp, str, bool]] = []
    clock = pd.Timestamp(start)
    for case in range(n_cases):
        steps = list(PROCESS_STEPS)
        if rng.random() < 0.2:
            at = steps.index("Inspect")
            steps[at + 1 : at + 1] = ["Grind", "Inspect"]
        deviant = bool(rng.random() < deviation_rate)
        if deviant:
            how = rng.integers(3)
            if how == 0:
                steps.remove("Inspect")
            elif how == 1:
                i = int(rng.integers(1, len(steps) - 2))
                steps[i], steps[i + 1] = steps[i + 1], steps[i]
            else:
                steps.insert(int(rng.integers(1, len(steps))), "Manual fix")
        time = clock + pd.Timedelta(minutes=float(rng.integers(0, 120)))
        for step in steps:
            time += pd.Timedelta(minutes=float(rng.gamma(4.0, 15.0)))
            rows.append(
                (f"case_{case:04d}", step, time.floor("s"), f"R{int(rng.integers(1, 5))}", deviant)
            )
        clock += pd.Timedelta(hours=2)
    return pd.DataFrame(rows, columns=["case_id", "activity", "timestamp", "resource", "deviant"])
