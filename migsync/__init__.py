"""migsync: keep Slurm's gres.conf in step with a node's real NVIDIA MIG layout."""
__version__ = "0.1.0"
