"""Errors of the detect stage. Both stop recording loudly (privacy rule 2)."""


class DetectorError(Exception):
    """Detection failed for one image; the caller must obscure or drop that frame."""


class ModelError(DetectorError):
    """A model is missing, corrupt or does not match its manifest: refuse to run at all."""
