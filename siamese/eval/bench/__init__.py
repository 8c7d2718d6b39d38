"""Benchmarks that print a table (`siamese bench WHAT`): detection, live verification, clustering
quality and scale, the gallery at a million embeddings. Measured, never asserted in tests."""
