"""The TFLite interpreter: LiteRT (``ai_edge_litert``), else ``tflite_runtime``.

XNNPACK is LiteRT's default CPU delegate; it is left on (we never pass
``experimental_op_resolver_type`` that would disable it). Quantized inputs and outputs are
converted here, so decoders only see float arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from daemon.detect.errors import ModelError


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ModelError(
                "no TFLite runtime: install ai-edge-litert (or tflite-runtime)"
            ) from None
    return Interpreter


class TFLiteModel:
    """One interpreter over one model file, with its input and output tensors described."""

    def __init__(
        self, path: Path, threads: int = 2, input_hw: tuple[int, int] | None = None
    ) -> None:
        """``input_hw`` resizes the input (height, width) before allocation: only for fully
        convolutional models, whose outputs then scale with it."""
        self.path = Path(path)
        try:
            self._it = _interpreter_class()(model_path=str(self.path), num_threads=threads)
            if input_hw is not None:
                index = self._it.get_input_details()[0]["index"]
                self._it.resize_tensor_input(index, [1, *input_hw, 3])
            self._it.allocate_tensors()
        except ModelError:
            raise
        except Exception as exc:  # the runtime raises ValueError/RuntimeError on bad flatbuffers
            raise ModelError(f"{self.path}: cannot load model: {exc}") from None
        inp = self._it.get_input_details()
        if len(inp) != 1:
            raise ModelError(f"{self.path}: expected one input, found {len(inp)}")
        self._in = inp[0]
        self._outs = self._it.get_output_details()
        _, self.height, self.width, self.channels = (int(v) for v in self._in["shape"])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.input_quant = tuple(self._in["quantization"])

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return self._outs

    def to_input(self, rgb: np.ndarray, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
        """Batch of one in the input dtype, from uint8 RGB meaning ``rgb * scale + offset``."""
        if self.input_dtype == np.float32:
            x = rgb.astype(np.float32)
            if scale != 1.0 or offset != 0.0:
                x = x * scale + offset
            return x[None]
        qscale, qzero = self.input_quant
        plain = scale == 1.0 and offset == 0.0
        if self.input_dtype == np.int8 and plain and qzero == -128 and abs(qscale - 1.0) < 1e-4:
            return (rgb ^ np.uint8(0x80)).view(np.int8)[None]  # int8 input: uint8 pixel - 128
        if self.input_dtype == np.uint8 and abs(qscale - scale) < 1e-6 and qzero == 0:
            return rgb[None]
        x = (rgb.astype(np.float32) * scale + offset) / qscale + qzero
        info = np.iinfo(self.input_dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(self.input_dtype)[None]

    def invoke(self, x: np.ndarray) -> None:
        """Run on ``x`` (from :meth:`to_input`). The runtime releases the GIL meanwhile."""
        self._it.set_tensor(self._in["index"], x)
        self._it.invoke()

    def output(self, i: int) -> np.ndarray:
        """Output ``i`` of the last invoke, batch dimension dropped, dequantized to float32."""
        d = self._outs[i]
        y = self._it.get_tensor(d["index"])[0]
        if y.dtype == np.float32:
            return y
        scale, zero = d["quantization"]
        return (y.astype(np.float32) - zero) * scale if scale else y.astype(np.float32)

    def output_raw(self, i: int) -> tuple[np.ndarray, float, int]:
        """Output ``i`` as stored (maybe int8) with its scale and zero point, batch dropped."""
        d = self._outs[i]
        scale, zero = d["quantization"]
        return self._it.get_tensor(d["index"])[0], float(scale), int(zero)
