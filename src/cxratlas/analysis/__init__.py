"""Analyses that guide subgroup work: cross-model comparison, linear probes, enrichment."""
