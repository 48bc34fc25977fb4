"""Forecasting library: traffic history in, predicted replica counts (and keep-alive windows) out.

Pure numpy / scikit-learn; it never imports a Kubernetes library, so it can be used offline
(benchmarks, replay) and by the operator alike.
"""
