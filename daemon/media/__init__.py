"""Video decoding and encoding through PyAV (FFmpeg)."""
