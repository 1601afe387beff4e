"""Loading, validating and versioning the desired state."""
