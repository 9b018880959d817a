"""Benchmarks of stepml's built-in models against the scikit-learn peers (``python -m bench.run``)."""
