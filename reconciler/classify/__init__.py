"""Deciding what each drift is: acceptable, reversible, or for a person."""
