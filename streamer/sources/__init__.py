"""Sources of audio: the Source interface, the ring buffer, devices and files."""
