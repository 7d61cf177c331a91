"""Task distributions that need no files on disk."""

from alfa.tasks.sinusoid import SinusoidTasks, fixed_sinusoid_tasks

__all__ = ["SinusoidTasks", "fixed_sinusoid_tasks"]
