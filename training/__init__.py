"""Training: trainer, configs, negative sampling, checkpoints."""
