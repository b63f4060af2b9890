"""Training: the one Trainer, optimizers and schedules, checkpoints, metrics and FLOPs."""
