"""The fitted state of an experiment on disk, in formats that do not run code when read.

:meth:`Experiment.save <observml.experiments.base.Experiment.save>` hands this module the
state (every attribute ending in ``_``, but ``settings_``, which is rebuilt from
``config.yaml``). Each attribute goes to the first format that can hold it:

===================  =============================  ==========================================
attribute            file                           why it is safe to read
===================  =============================  ==========================================
JSON values          ``state.json``                 plain JSON; ``pd.Timestamp`` as ISO text
DataFrame / Series   ``parts/<name>.parquet``       columns and index only (pyarrow >= 14.0.1
                                                    refuses the pickle-based extension type)
anything skops can   ``parts/<name>.skops``         skops builds only the types in
express with only                                   :data:`TRUSTED_TYPES` and its own list
trusted types                                       (scikit-learn, numpy, scipy); no pickle
the rest             ``model.pkl``                  a pickle: loaded only after the folder's
                                                    signature was checked (``allow_pickle``)
===================  =============================  ==========================================

``state.json`` lists where each attribute is, so loading never guesses and never imports a
class that a file names: the experiment's class comes from the registry, and skops resolves
only trusted types.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import pandas as pd

from observml.errors import ExperimentError, UntrustedModelError
from observml.store._skops import skops_io

__all__ = [
    "LEGACY_PICKLE",
    "PARTS_DIR",
    "PICKLE_FILE",
    "STATE_FILE",
    "TRUSTED_TYPES",
    "has_pickle",
    "plain_frame",
    "read_state",
    "write_state",
]

#: The manifest: format, JSON values and where every other attribute is.
STATE_FILE: Final = "state.json"
#: Folder of the per-attribute skops and parquet files.
PARTS_DIR: Final = "parts"
#: The attributes no other format can hold (signed; read only after the check).
PICKLE_FILE: Final = "model.pkl"
#: What an observml before the secure formats wrote: the whole state as one pickle.
LEGACY_PICKLE: Final = PICKLE_FILE

_FORMAT: Final = 2

#: Types skops may build beyond its own defaults (scikit-learn estimators, numpy, scipy).
#: Our model classes (every ``observml.*`` target and adapter of the built-in experiment types'
#: model tables, checked by a test) hold only arrays, numbers and library estimators; the
#: library types are the compiled helpers those estimators keep (trees, KD/ball trees, distance
#: metrics) and hmmlearn's HMM. Each is rebuilt from its stored attributes; none runs code on
#: load beyond its own ``__setstate__``. The PyTorch models (the ``deep`` extra) keep their
#: network as the ``torch.save`` bytes of its ``state_dict``, which their ``__setstate__`` reads
#: with ``torch.load(..., weights_only=True)`` (tensors only, never pickled code).
TRUSTED_TYPES: Final[tuple[str, ...]] = (
    "builtins.frozenset",
    "collections.deque",
    "hmmlearn.base.ConvergenceMonitor",
    "hmmlearn.hmm.GaussianHMM",
    "observml.experiments._forecasters.ArimaForecaster",
    "observml.experiments._holt_winters.HoltWintersForecaster",
    "observml.experiments._neural_forecasters.LSTMForecaster",
    "observml.experiments._neural_forecasters.WindowAEForecaster",
    "observml.experiments._process_models.HeuristicsMiner",
    "observml.experiments._process_models.InductiveMiner",
    "observml.experiments._ssa.SSAForecaster",
    "observml.experiments._window_ae.WindowAutoencoder",
    "observml.experiments.detectors.DBSCANDetector",
    "observml.experiments.detectors.PCAMonitor",
    "observml.experiments.detectors.SklearnDetector",
    "observml.experiments.sequence_models.BayesNetClassifier",
    "observml.experiments.sequence_models.MarkovChainClassifier",
    "observml.experiments.sequence_models.SupervisedHMM",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.tree._tree.Tree",
)


def write_state(root: Path, state: Mapping[str, Any]) -> dict[str, str]:
    """Write ``state`` into ``root``; return ``{attribute: format}`` (``json``, ``parquet``...).

    Raises:
        ExperimentError: An attribute name is not a plain identifier.
    """
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    leftovers: dict[str, Any] = {}
    parts = root / PARTS_DIR
    for name, value in state.items():
        if not name.isidentifier():
            raise ExperimentError(f"experiment state: attribute {name!r} is not an identifier.")
        if isinstance(value, pd.Timestamp):
            values[name] = {"timestamp": value.isoformat()}
            where[name] = "timestamp"
        elif _is_json(value):
            values[name] = value
            where[name] = "json"
        elif isinstance(value, pd.DataFrame | pd.Series) and _write_frame(parts, name, value):
            where[name] = "series" if isinstance(value, pd.Series) else "parquet"
            values[name] = {"freq": _freq(value.index)}
        elif _write_skops(parts, name, value):
            where[name] = "skops"
        else:
            leftovers[name] = value
            where[name] = "pickle"
    if leftovers:
        import joblib

        joblib.dump(leftovers, root / PICKLE_FILE)
    document = {"format": _FORMAT, "parts": where, "values": values}
    (root / STATE_FILE).write_text(json.dumps(document, indent=1, allow_nan=True), "utf-8")
    return where


def has_pickle(root: Path) -> bool:
    """Whether reading the state of ``root`` would unpickle anything."""
    return (root / PICKLE_FILE).is_file()


def read_state(root: Path, *, allow_pickle: bool, where: str) -> dict[str, Any]:
    """Read what :func:`write_state` wrote (or a legacy ``model.pkl`` when pickles are allowed).

    Args:
        root: The model folder.
        allow_pickle: Whether ``model.pkl`` may be unpickled: only once the folder's
            signature was verified, or when the operator trusts unsigned models.
        where: What the folder is, for messages (names the run).

    Raises:
        UntrustedModelError: The state needs unpickling and ``allow_pickle`` is false, or a
            skops part holds a type that is not trusted.
        ExperimentError: The folder is not a saved experiment state.
    """
    manifest = root / STATE_FILE
    if not manifest.is_file():
        return _read_legacy(root, allow_pickle=allow_pickle, where=where)
    try:
        document = json.loads(manifest.read_text("utf-8"))
        parts: dict[str, str] = dict(document["parts"])
        values: dict[str, Any] = dict(document["values"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ExperimentError(
            f"{where}: {STATE_FILE} is not an observml state ({type(exc).__name__}). Train or"
            " save the experiment again."
        ) from exc
    state: dict[str, Any] = {}
    pickled: dict[str, Any] | None = None
    for name, kind in parts.items():
        if not isinstance(name, str) or not name.isidentifier() or not name.endswith("_"):
            raise ExperimentError(f"{where}: {STATE_FILE} names attribute {name!r}.")
        if kind == "json":
            state[name] = values.get(name)
        elif kind == "timestamp":
            state[name] = pd.Timestamp(str(values[name]["timestamp"]))
        elif kind in ("parquet", "series"):
            frame = pd.read_parquet(root / PARTS_DIR / f"{name}.parquet")
            freq = (values.get(name) or {}).get("freq")
            frame.index = _with_freq(frame.index, str(freq) if freq else None)
            state[name] = frame.iloc[:, 0] if kind == "series" else frame
        elif kind == "skops":
            state[name] = _read_skops(root / PARTS_DIR / f"{name}.skops", where)
        elif kind == "pickle":
            if pickled is None:
                pickled = _unpickle(root / PICKLE_FILE, allow_pickle=allow_pickle, where=where)
            state[name] = pickled[name]
        else:
            raise ExperimentError(f"{where}: {STATE_FILE} has an unknown part kind {kind!r}.")
    return state


# -- the formats --------------------------------------------------------------------------
def _is_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` survives a JSON round trip unchanged (lists, not tuples)."""
    if depth > 20:
        return False
    if value is None or type(value) in (bool, int, str, float):
        return True  # NaN and infinity too: Python's json writes and reads them
    if type(value) is list:
        return all(_is_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False


def _write_frame(parts: Path, name: str, value: pd.DataFrame | pd.Series) -> bool:
    """Write a frame (a Series as a one-column frame) as parquet; False when it cannot be."""
    frame = value.to_frame() if isinstance(value, pd.Series) else value
    if not all(isinstance(c, str) for c in frame.columns):
        return False
    parts.mkdir(parents=True, exist_ok=True)
    path = parts / f"{name}.parquet"
    try:
        frame.to_parquet(path)
        if plain_frame(frame):
            return True
        back = pd.read_parquet(path)
        back.index = _with_freq(back.index, _freq(frame.index))
        same = back.equals(frame) and list(back.index.names) == list(frame.index.names)
        same = same and _freq(back.index) == _freq(frame.index)
    except Exception:  # pyarrow's errors (ArrowInvalid, ...) for columns it cannot hold
        same = False
    if not same:
        path.unlink(missing_ok=True)
    return same


#: Column dtypes parquet (pyarrow) stores and gives back unchanged.
_PLAIN_DTYPES: Final = frozenset({"float64", "int64", "bool"})


def plain_frame(frame: pd.DataFrame) -> bool:
    """Whether parquet is known to give ``frame`` back exactly, so the read-back can be skipped.

    True for the common case, numeric training rows: unique string column names, each column
    ``float64``, ``int64`` or ``bool``, and the default ``RangeIndex`` (from 0, step 1,
    unnamed), which pandas writes as metadata and rebuilds. Anything else is read back and
    compared, as before (issue 13: the read-back cost a training job about 10 ms).
    """
    index = frame.index
    return (
        isinstance(index, pd.RangeIndex)
        and index.start == 0
        and index.step == 1
        and index.name is None
        and frame.columns.is_unique
        and all(isinstance(c, str) for c in frame.columns)
        and all(str(dtype) in _PLAIN_DTYPES for dtype in frame.dtypes)
    )


def _freq(index: pd.Index) -> str | None:
    """The frequency of a ``DatetimeIndex`` (parquet does not keep it), else ``None``."""
    freq = getattr(index, "freqstr", None)
    return str(freq) if freq else None


def _with_freq(index: pd.Index, freq: str | None) -> pd.Index:
    if freq is None or not isinstance(index, pd.DatetimeIndex):
        return index
    return pd.DatetimeIndex(index, freq=freq)


def _write_skops(parts: Path, name: str, value: Any) -> bool:
    """Write ``value`` with skops when it holds only trusted types; False otherwise."""
    sio = skops_io()

    try:
        data = sio.dumps(value)
    except Exception:  # a type skops cannot express (pandas objects, statsmodels results)
        return False
    if set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES):
        return False
    parts.mkdir(parents=True, exist_ok=True)
    (parts / f"{name}.skops").write_bytes(data)
    return True


def _read_skops(path: Path, where: str) -> Any:
    sio = skops_io()

    data = path.read_bytes()
    untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    if untrusted:
        raise UntrustedModelError(
            f"{where}: {path.parent.name}/{path.name} holds types this hub does not load:"
            f" {', '.join(untrusted)}. Train or save the experiment again with this hub."
        )
    return sio.loads(data, trusted=list(TRUSTED_TYPES))


def _unpickle(path: Path, *, allow_pickle: bool, where: str) -> dict[str, Any]:
    if not allow_pickle:
        raise UntrustedModelError(
            f"{where}: refusing to unpickle {path.name}: the folder's signature was not"
            " verified. Train or save the experiment again with this hub, or set"
            " global.trust_unsigned_models: true (see docs/security.md)."
        )
    import joblib

    loaded = joblib.load(path)
    if not isinstance(loaded, dict):
        raise ExperimentError(f"{where}: {path.name} is not an observml state.")
    return loaded


def _read_legacy(root: Path, *, allow_pickle: bool, where: str) -> dict[str, Any]:
    """The whole state from a pre-skops ``model.pkl`` (``{"format": 1, "state": ...}``)."""
    if not (root / LEGACY_PICKLE).is_file():
        raise ExperimentError(
            f"{where}: no {STATE_FILE}; this is not a saved experiment. Train or save it again."
        )
    payload = _unpickle(root / LEGACY_PICKLE, allow_pickle=allow_pickle, where=where)
    if payload.get("format") != 1 or not isinstance(payload.get("state"), dict):
        raise ExperimentError(
            f"{where}: {LEGACY_PICKLE} is not an observml experiment state. Save it again with"
            " this version of observml."
        )
    state: dict[str, Any] = payload["state"]
    return state
