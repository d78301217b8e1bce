"""Speed and memory of whisper_multi against its peers on the same weights: ``python -m benchmarks``.

See benchmarks/README.md; the case interface and the runner are in ``benchmarks.harness``.
"""
