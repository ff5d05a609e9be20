"""The hub at work: training jobs, training runs, the prediction stream and draining queues.

* :mod:`~observml.runtime.jobs` — a unit of work with a status, run where it can be stopped;
* :mod:`~observml.runtime.training` — one training run, from MLOps run to model version;
* :mod:`~observml.runtime.batch` — predicting one micro-batch of messages (the stream and
  on-demand prediction share it);
* :mod:`~observml.runtime.streaming` — the stream worker: consume, predict, publish, ack;
* :mod:`~observml.runtime.draining` — reading a queue to its end (training rows, predictions).

Must not import: the hub facade, the API, the CLI or the demo.
"""
