"""Running experiments: the typed config, the task loop with checkpoints, experiments of several methods, the grid on Ray."""
