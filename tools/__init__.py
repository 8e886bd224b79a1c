"""Tooling over the engine's public facade: benchmarks and search-quality evaluation."""
