"""Model persistence: what a trained experiment is on disk and in the MLOps store.

* :mod:`~observml.store.model_files` — each fitted attribute in a format that runs no code on
  load (JSON, Parquet, skops), the rest signed;
* :mod:`~observml.store.signing` — the hub key and the signature of a model folder;
* :mod:`~observml.store.artifacts` — a folder uploaded to a run and registered as a version,
  and downloaded again by run, version or alias;
* :mod:`~observml.store.experiments` — an experiment saved to and loaded from the store.

Must not import: the hub, the runtime, retraining or any plugin implementation (only the MLOps
protocol).
"""
