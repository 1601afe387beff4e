"""The engine: one pass as a pipeline (read, compare, classify, decide, plan, gate, execute) and the run
over many targets; every write of live state asks engine.gate first."""
