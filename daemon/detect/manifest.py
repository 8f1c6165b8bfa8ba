"""Find the models and check them against ``models/manifest.yaml`` before anything loads them.

A model whose file is missing, or whose sha256 differs from the manifest, raises
:class:`ModelError`: the daemon then refuses to record rather than run a model nobody checked
(privacy rule 2). Search order for the models folder: ``detect.models_dir``, ``$VEILCAM_MODELS``,
the repository's ``models/`` beside the package (source or editable install),
``/opt/veilcam/models``, ``/usr/share/veilcam/models``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from daemon.detect.errors import ModelError

MANIFEST = "manifest.yaml"
SYSTEM_DIRS = (Path("/opt/veilcam/models"), Path("/usr/share/veilcam/models"))


@dataclass(frozen=True)
class ModelInfo:
    """One model of the manifest; ``meta`` keeps every other field (input size, anchors, ...)."""

    name: str
    path: Path
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict, repr=False)


def search_dirs(models_dir: Path | None = None) -> list[Path]:
    """Candidate folders, in order of precedence."""
    dirs: list[Path] = []
    if models_dir is not None:
        dirs.append(Path(models_dir))
    env = os.environ.get("VEILCAM_MODELS")
    if env:
        dirs.append(Path(env))
    dirs.append(Path(__file__).resolve().parents[2] / "models")
    dirs.extend(SYSTEM_DIRS)
    return dirs


def find_models_dir(models_dir: Path | None = None) -> Path:
    """The first folder holding a manifest. An explicit ``models_dir`` must hold one."""
    if models_dir is not None and not (Path(models_dir) / MANIFEST).is_file():
        raise ModelError(f"{Path(models_dir) / MANIFEST}: no model manifest (detect.models_dir)")
    for d in search_dirs(models_dir):
        if (d / MANIFEST).is_file():
            return d
    tried = ", ".join(str(d) for d in search_dirs(models_dir))
    raise ModelError(f"no {MANIFEST} found; looked in: {tried}")


def _entries(doc: Any) -> list[dict[str, Any]]:
    """Accept ``models:`` as a mapping name -> entry or a list of entries with ``id``/``name``."""
    models = doc.get("models") if isinstance(doc, dict) else None
    if isinstance(models, dict):
        return [{"name": k, **(v or {})} for k, v in models.items()]
    if isinstance(models, list):
        return [dict(m) for m in models if isinstance(m, dict)]
    raise ModelError("manifest has no 'models' section")


def _result_sha(entry: dict[str, Any]) -> str | None:
    """The sha256 of the committed file, whichever of the usual spellings the manifest uses."""
    for key in ("sha256", "result_sha256", "tflite_sha256"):
        v = entry.get(key)
        if isinstance(v, str):
            return v
        if isinstance(v, dict):
            for sub in ("result", "tflite", "file"):
                if isinstance(v.get(sub), str):
                    return v[sub]
    result = entry.get("result")
    if isinstance(result, dict) and isinstance(result.get("sha256"), str):
        return result["sha256"]
    return None


def _file(entry: dict[str, Any]) -> str | None:
    for key in ("file", "path", "tflite"):
        if isinstance(entry.get(key), str):
            return entry[key]
    result = entry.get("result")
    if isinstance(result, dict):
        for key in ("file", "path"):
            if isinstance(result.get(key), str):
                return result[key]
    return None


def read_manifest(models_dir: Path | None = None) -> dict[str, ModelInfo]:
    """Every model the manifest lists, by name (files not yet checked)."""
    root = find_models_dir(models_dir)
    path = root / MANIFEST
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"{path}: cannot read model manifest: {exc}") from None
    try:
        entries = _entries(doc)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
    out: dict[str, ModelInfo] = {}
    for e in entries:
        name, file, sha = e.get("name", e.get("id")), _file(e), _result_sha(e)
        if not isinstance(name, str) or file is None or sha is None:
            raise ModelError(f"{path}: entry {name or e!r} lacks name, file or sha256")
        out[name] = ModelInfo(name, root / file, sha.lower(), e)
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified_model(name: str, models_dir: Path | None = None) -> ModelInfo:
    """The manifest entry ``name`` after checking its file exists and matches its sha256."""
    models = read_manifest(models_dir)
    info = models.get(name)
    if info is None:
        raise ModelError(f"model {name!r} is not in the manifest (has: {', '.join(models)})")
    if not info.path.is_file():
        raise ModelError(f"{info.path}: model file missing")
    try:
        digest = sha256_of(info.path)
    except OSError as exc:
        raise ModelError(f"{info.path}: cannot read model: {exc}") from None
    if digest != info.sha256:
        raise ModelError(
            f"{info.path}: sha256 {digest} does not match the manifest ({info.sha256}); "
            "the model is corrupt or was replaced"
        )
    return info
