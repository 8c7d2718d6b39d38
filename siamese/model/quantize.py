"""Int8 copies of a model's embedding network, derived on first use from its float32 ONNX.

ONNX Runtime runs int8 convolutions about 3x faster than float32 ones on a CPU (the shipped
ensemble: 15.7 -> 5.3 ms per face batched, mirror included, 2 threads, `siamese bench embed`; its
members' int8 embeddings within cosine 0.998 / 0.996 of the float32 ones on every validation face,
`siamese quantize default`). What int8 needs beyond the
float32 weights is each activation's range, fitted once on faces of the model's own *training*
people and kept, a few kilobytes, in the model dir:

    siamese quantize MODEL                     fit()  -> MODEL/quantization.json
    Embedder.load(MODEL, precision="int8")     int8_path() -> <cache>/models/int8-<key>/embedding.onnx (once)
    an ensemble's model.json "precision": "int8"    loads each member so (each needs quantization.json)

The int8 network is never stored: it is derived from the float32 file and the ranges by ONNX
Runtime's quantizer (QDQ, weights int8 per channel with a reduced range, so that CPUs without
VNNI do not saturate; activations uint8), the same bytes every time for one onnxruntime version.
quantization.json records the SHA-256 of the float32 file it was fitted for (another network is
refused) and of the int8 file it derived then; a different derivation (another onnxruntime) is used
with a warning, since its embeddings may differ slightly from those the calibrations were fitted on.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from siamese.io.files import atomic_write_bytes, atomic_write_text, file_digest
from siamese.io.paths import user_cache
from siamese.model.preprocess import to_input

__all__ = ["FILE", "fit", "int8_path", "read", "write"]

log = logging.getLogger(__name__)

FILE = "quantization.json"
_SETTINGS = {"format": "QDQ", "weights": "int8, per channel, reduced range", "activations": "uint8",
             "method": "MinMax"}
_WARNED: set[Path] = set()


def _ort_quantization():
    """onnxruntime.quantization with the calibration cache (onnxruntime >= 1.27), else a one-line error."""
    import onnxruntime
    from onnxruntime import quantization as q

    if "calibration_cache_path" not in inspect.signature(q.quantize_static).parameters:
        raise RuntimeError(f"int8 models need onnxruntime >= 1.27 (this is {onnxruntime.__version__}): "
                           "pip install -U onnxruntime")
    return q


def _quantize(src: Path, dst: Path, ranges_file: Path, batches=None) -> None:
    """ONNX Runtime's static quantizer with our settings: ranges from `batches` (fitting; written to
    `ranges_file`) or read from `ranges_file` (deriving)."""
    q = _ort_quantization()
    # Its advice to pre-process goes to the root logger (measured: no faster here). Silenced, and a
    # handler its logging.warning() may add to an unconfigured root is taken away again.
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(max(level, logging.ERROR))
    try:
        q.quantize_static(str(src), str(dst), batches, quant_format=q.QuantFormat.QDQ, per_channel=True,
                          reduce_range=True, activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=q.CalibrationMethod.MinMax, calibration_cache_path=str(ranges_file))
    finally:
        root.setLevel(level)
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over (N, S, S, 3) uint8 faces and their mirrors."""

    def __init__(self, name: str, faces: np.ndarray, batch: int = 32):
        x = to_input(faces)
        x = np.concatenate([x, x[:, :, ::-1]])
        self._it = iter([{name: x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self._it, None)


def _ort_ranges(ranges: dict) -> dict:
    """Our {tensor: [lowest, highest]} -> the JSON onnxruntime's calibration cache holds."""
    def arr(v):
        return {"data": [float(v)], "dtype": "float32", "CLS": "numpy.array"}

    method = {"CLS": "CalibrationMethod", "value": "CalibrationMethod.MinMax"}
    return {"CLS": "TensorsData", "calibration_method": method,
            "data": {k: {"lowest": arr(lo), "highest": arr(hi), "CLS": "TensorData"}
                     for k, (lo, hi) in sorted(ranges.items())}}


def fit(onnx_path: str | os.PathLike, faces: np.ndarray) -> tuple[dict, bytes]:
    """Fit the activation ranges of the float32 network `onnx_path` on `faces` (and their mirrors).

    Args:
        onnx_path: the float32 embedding.onnx (input (B, S, S, 3) float32 in [0, 1]).
        faces: (N, S, S, 3) uint8 RGB aligned faces of people the model trained on.

    Returns:
        ({"ranges": {tensor: [lowest, highest]}, "settings", "onnxruntime"}, the int8 ONNX bytes
        they derive).
    """
    import onnxruntime

    src = Path(onnx_path)
    name = onnxruntime.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    with tempfile.TemporaryDirectory(prefix="siamese-int8-") as tmp:
        cache = Path(tmp) / "ranges.json"
        _quantize(src, Path(tmp) / "int8.onnx", cache, _Batches(name, faces))
        raw = json.loads(cache.read_text())
        ranges = {k: [float(v["lowest"]["data"][0]), float(v["highest"]["data"][0])] for k, v in raw["data"].items()}
        # Derive from the ranges as stored (decimal JSON), as every later load will.
        data = _derive(src, ranges, Path(tmp))
    return {"settings": _SETTINGS, "onnxruntime": onnxruntime.__version__, "ranges": ranges}, data


def _derive(src: Path, ranges: dict, tmp: Path) -> bytes:
    cache, out = tmp / "ranges_in.json", tmp / "derived.onnx"
    cache.write_text(json.dumps(_ort_ranges(ranges)))
    _quantize(src, out, cache)
    return out.read_bytes()


def read(model_dir: str | os.PathLike) -> dict | None:
    """The model dir's quantization.json, or None when it has none."""
    p = Path(model_dir) / FILE
    if not p.is_file():
        return None
    try:
        q = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a quantization file ({e}) — refit: "
                         f"`siamese quantize {model_dir} overwrite=true`") from e
    if not isinstance(q, dict):
        raise ValueError(f"{p}: not a quantization file (not a JSON object) — refit: "
                         f"`siamese quantize {model_dir} overwrite=true`")
    return q


def int8_path(model_dir: str | os.PathLike, float32_onnx: str | os.PathLike) -> tuple[Path, str]:
    """The int8 network of `model_dir`, derived (once, atomically) into the user cache: (its path,
    the SHA-256 quantization.json records for it, which names the network in fingerprints).

    Args:
        model_dir: a model dir with quantization.json.
        float32_onnx: its float32 embedding.onnx (readable; `siamese.model.packed.weights_path`).

    Raises:
        FileNotFoundError: no quantization.json (fit one: `siamese quantize MODEL`).
        ValueError: quantization.json was fitted for another network, or is damaged.
    """
    root, src = Path(model_dir), Path(float32_onnx)
    q = read(root)
    if q is None:
        raise FileNotFoundError(f"{root}: no {FILE}, so no int8 network — fit one: `siamese quantize {root}`")
    try:
        want_src, want_int8, ranges = q["float32_sha256"], q["int8_sha256"], q["ranges"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{root / FILE}: not a quantization file (missing {e}) — refit: "
                         f"`siamese quantize {root} overwrite=true`") from e
    if file_digest(src) != want_src:
        raise ValueError(f"{root / FILE}: fitted for another embedding.onnx than {src} — refit: "
                         f"`siamese quantize {root} overwrite=true`")
    key = hashlib.sha256(f"{want_src}:{json.dumps(ranges, sort_keys=True)}".encode()).hexdigest()
    cached = user_cache() / "models" / f"int8-{key}" / "embedding.onnx"
    if not cached.is_file():
        with tempfile.TemporaryDirectory(prefix="siamese-int8-") as tmp:
            data = _derive(src, ranges, Path(tmp))
        try:
            atomic_write_bytes(cached, data)
        except OSError as e:
            raise OSError(f"{cached.parent}: cannot write the int8 model there ({e.strerror or e}) — "
                          "set SIAMESE_CACHE to a writable folder") from e
    if cached not in _WARNED and file_digest(cached) != want_int8:
        _WARNED.add(cached)
        import onnxruntime

        log.warning("%s: onnxruntime %s derives another int8 network than the %s it was fitted with; "
                    "its embeddings may differ slightly from those its calibrations saw", root,
                    onnxruntime.__version__, q.get("onnxruntime"))
    return cached, want_int8


def write(model_dir: str | os.PathLike, fitted: dict, int8: bytes, float32_onnx: str | os.PathLike,
          faces: dict, overwrite: bool = False, closeness: dict | None = None) -> Path:
    """Save `fit`'s result as `model_dir`/quantization.json (atomically), with the hashes that tie
    it to the float32 file and the int8 bytes it derives, which faces it was fitted on and, once
    measured, how close the int8 network stays (`closeness`)."""
    target = Path(model_dir) / FILE
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists — pass overwrite=true to refit it")
    meta = {"float32_sha256": file_digest(float32_onnx), "int8_sha256": hashlib.sha256(int8).hexdigest(),
            "fitted_on": faces, **fitted, **({"closeness_on_validation": closeness} if closeness else {})}
    return atomic_write_text(target, json.dumps(meta, indent=1))
