"""Rendering of typed outcomes and records: table, JSON and Markdown for the CLI and the API."""
