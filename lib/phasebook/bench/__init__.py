"""Benchmarks: scripts that measure and print (and store, with provenance), never assert."""
