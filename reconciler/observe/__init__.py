"""Metrics and logging: every collector and the structlog setup live here."""
