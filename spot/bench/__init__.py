"""Benchmarks: train-step and decoding throughput, FLOP counts, device peaks, mixed-task
inference. `spot bench ...` (spot/commands/bench.py) prints what these functions return."""
