"""Unity bridge worker: the TCP server the Unity avatar client connects to."""
