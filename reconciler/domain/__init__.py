"""Pure models: manifests, paths, drift, plans and run outcomes. No I/O here."""
