"""Hydra launcher plugin of this project: SLURM with pre-flight checks (experiments.cluster)."""
