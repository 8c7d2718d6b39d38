"""A copy of a model dir whose network weights keep fewer significant bits (default 11: half
precision's mantissa, with float32's exponent range, so no weight overflows or vanishes), stored
packed (`siamese.model.packed`): the low mantissa bytes become zeros and the packed file about half
as big. The other files are copied but for the calibrations (verify.json, cluster.json, impostors.*:
fitted for the source, `siamese calibrate OUT` fits the copy's); model.json records the new files'
SHA-256s.

    siamese export checkpoints/RUN formats=[onnx] out=EXPORT      # a student: ONNX first
    python tools/round_weights.py siamese/assets/default_model OUT_DIR [--bits 11]

Only `embedding.onnx` (plain or packed) is rounded; the head is a few numbers and stays as it is.
The copy keeps no other format of the embedding (a .keras, SavedModel or TFLite file holds the
unrounded weights): model.json drops them, so the copy's fingerprint names the rounded ONNX and a
gallery made with the source is refused by it (`siamese gallery reembed`). The copy is another
model: its figures are measured again (`python tools/val_pairs.py OUT_DIR`, `siamese evaluate
OUT_DIR`, ...), never carried over. Prints each file's size before and after and
the largest relative change of a weight.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from siamese.io.files import atomic_write_text, file_digest, staged_dir
from siamese.model.modeldir import CALIBRATIONS
from siamese.model.packed import SUFFIX, pack, stored, weights_path


def round_bits(a: np.ndarray, bits: int = 11) -> np.ndarray:
    """float32 `a` rounded to `bits` significant bits (1 <= bits <= 24; nearest, ties away from
    zero), float32's exponent kept: relative change <= 2**-bits. NaN and infinities unchanged."""
    if not 1 <= bits <= 24:
        raise ValueError(f"bits must be 1 to 24, not {bits}")
    a = np.ascontiguousarray(a, np.float32)
    drop = 24 - bits  # of float32's 24 significant bits (23 stored)
    if drop == 0:
        return a.copy()
    u = a.view(np.uint32)
    r = ((u + np.uint32(1 << (drop - 1))) & np.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF)).view(np.float32)
    return np.where(np.isfinite(a), r, a)


def round_onnx(src: Path, dst: Path, bits: int) -> tuple[int, float]:
    """Write ONNX `src` to `dst` with its float32 initializers rounded. Returns (weights, largest
    relative change)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    n, worst = 0, 0.0
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            a = numpy_helper.to_array(init)
            r = round_bits(a, bits)
            nz = a != 0
            if nz.any():
                worst = max(worst, float(np.max(np.abs(r[nz] - a[nz]) / np.abs(a[nz]))))
            init.CopyFrom(numpy_helper.from_array(r, init.name))
            n += a.size
    onnx.save(model, str(dst))
    return n, worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a model or export dir with embedding.onnx (plain or packed)")
    ap.add_argument("out", help="the new model dir (must not exist)")
    ap.add_argument("--bits", type=int, default=11, help="significant bits kept (11: half precision's)")
    args = ap.parse_args()
    src, out = Path(args.model), Path(args.out)
    onnx_path = weights_path(src, "embedding.onnx")
    if onnx_path is None:
        raise FileNotFoundError(f"{src}: no embedding.onnx (plain or packed) — "
                                "`siamese export RUN formats=[onnx]` first")
    if out.exists():
        raise ValueError(f"{out}: already exists — name a new folder")
    with staged_dir(out) as tmp:
        for f in src.iterdir():
            # Not the source's weights (any format) nor its calibrations (fitted for its fingerprint).
            if f.is_file() and not f.name.startswith("embedding.") and f.name not in CALIBRATIONS:
                shutil.copy2(f, tmp / f.name)
        plain = tmp / "embedding.onnx"
        n, worst = round_onnx(onnx_path, plain, args.bits)
        packed = pack(plain, tmp / ("embedding.onnx" + SUFFIX))
        meta = json.loads((tmp / "model.json").read_text())
        files = meta.setdefault("files", {})
        source = {n: files.pop(n) for n in sorted(files) if n.startswith("embedding.")}  # its weights
        if (card := tmp / "MODEL_CARD.md").is_file():
            card.write_text(card.read_text().rstrip("\n") + "\n\n## This copy\n"
                            f"The embedding's weights rounded to {args.bits} significant bits "
                            "(`tools/round_weights.py`): another model. The figures above are "
                            "its source's; this copy's are measured again.\n")
            files[card.name] = file_digest(card)
        meta.pop("not_shipped", None)  # described the source's stored files
        meta["formats"] = ["onnx"]
        for f in (plain, packed):
            files[f.name] = file_digest(f)
        if (held := stored(src, "embedding.onnx")).name.endswith(SUFFIX):
            was = held.stat().st_size
        else:  # a plain export: how big it would be packed, for the comparison printed below
            was = pack(onnx_path, tmp / "was.xz").stat().st_size
            (tmp / "was.xz").unlink()
        plain.unlink()  # stored packed only, as shipped; unpacked on first use and hash-checked
        meta["weights_rounded"] = {"significant_bits": args.bits, "from": str(src),
                                   "largest_relative_change": worst, "source_sha256": source}
        meta["not_shipped"] = {"embedding.onnx": "stored packed, losslessly, as embedding.onnx"
                               f"{SUFFIX} (siamese.model.packed); unpacked on first use into the user "
                               "cache (SIAMESE_CACHE, else ~/.cache/siamese) and checked against the hash above"}
        atomic_write_text(tmp / "model.json", json.dumps(meta, indent=2))
        now = packed.stat().st_size
    print(f"{out}: {n} weights rounded to {args.bits} significant bits (largest relative change {worst:.2e}); "
          f"embedding.onnx packed {was} B -> {now} B; model dir {sum(f.stat().st_size for f in out.iterdir())} B; "
          f"calibrate it: siamese calibrate {out}")


if __name__ == "__main__":
    from siamese.cli import script

    script("round_weights", main)
