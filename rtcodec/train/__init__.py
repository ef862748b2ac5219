"""Training: data, losses, discriminators and the trainer. Only the CLI imports this package."""
