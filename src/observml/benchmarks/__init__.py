"""Benchmarks: public data sets scored under their published protocols, through the hub.

* :mod:`observml.benchmarks.scores`: pooled F1/FAR/MAR and the NAB changepoint score.
* :mod:`observml.benchmarks.skab`: the SKAB outlier-detection protocol and its leaderboard.
* :mod:`observml.benchmarks.skab.report`: the plotly HTML report of a SKAB run.
"""
