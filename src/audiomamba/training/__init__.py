"""Training: typed configuration, the training loop, optimiser/schedules, EMA and distributed helpers."""
