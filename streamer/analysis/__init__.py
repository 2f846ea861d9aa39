"""Per-stream analysis: the analyzer, one scoring turn, the model, VAD, files and uploads."""
