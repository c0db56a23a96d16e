"""What the inference worker and the GPU monitor both need, so neither imports the other:
GPU readings (NVML or a replayed trace), the GGUF header, and the VRAM plan of a profile."""
