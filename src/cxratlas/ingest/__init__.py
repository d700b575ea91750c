"""Ingest: datasets read by preset, validated, normalised; the plan and the shared sample."""
