"""Integration tests use the fixtures of tests/conftest.py (postgres_url) against real servers."""
