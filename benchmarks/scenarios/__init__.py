"""Benchmark scenarios, one module per group (loopback, provider link, ...)."""
