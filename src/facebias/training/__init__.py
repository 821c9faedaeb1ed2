"""The training task: Hydra config -> data, model, loggers, Lightning fit/test, run-dir outputs."""
