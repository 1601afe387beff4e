"""History in SQL: tables, the SqlHistoryStore, engine setup and migrations."""
