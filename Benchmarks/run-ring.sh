#!/bin/sh
# Virtqueue ring throughput (chains popped + completed per second), split vs
# packed, with/without EVENT_IDX and indirect tables, 1- and 3-descriptor
# chains. Builds the separate Benchmarks package in release mode (the first
# run takes a few minutes) and prints one table per case; "Throughput (# / s)
# (K)" is thousands of chains per second. Two variants per case:
#   round-trip   device pop + complete, with the mock driver refilling the
#                ring inside the measurement (as a busy guest would);
#   device-only  1000 chains posted outside the measurement, timed while
#                the device pops and completes them.
# The machine is shared: compare p50 values taken in the same run.
#
# Extra arguments go to the benchmark plugin, e.g. --filter 'packed.*'.
set -eu
cd "$(dirname "$0")/.."
exec swift package --package-path Benchmarks benchmark --target RingBenchmarks --metric throughput "$@"
