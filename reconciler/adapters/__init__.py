"""Adapters to live systems; each implements the ports and is registered by entry point."""
