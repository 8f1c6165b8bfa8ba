"""veilcam: mask faces on the device, record only masked video."""

__version__ = "0.1.0"
