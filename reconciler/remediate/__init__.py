"""Planning and executing changes: planner, executor, rollback."""
