"""Runtime helpers shared by inference and training: device and dtype resolution, atomic file writes, memory
tuning, CUDA-graph capture and torch.distributed glue."""
