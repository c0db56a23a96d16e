"""The inference worker: llama-cpp-python on a GGUF model, streaming chat over the bus."""
