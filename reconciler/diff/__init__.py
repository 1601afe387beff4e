"""Comparison of desired and observed documents."""
