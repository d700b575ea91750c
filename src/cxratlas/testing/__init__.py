"""Helpers for tests and the GPU check: tiny random-weight models of the seed classes."""
