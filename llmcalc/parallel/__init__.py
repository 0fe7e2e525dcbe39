"""Per-GPU memory and communication when training on many GPUs."""
