"""GPU monitor worker: NVML readings published on the bus."""
