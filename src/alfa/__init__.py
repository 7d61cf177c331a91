"""ALFA: meta-learning with adaptive hyperparameters."""
