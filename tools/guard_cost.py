"""What the extra faces' guard (`siamese.model.teacher_extra.Guard`) costs on a protocol split: for each
share of held-out people's photos it is asked to catch, its bar and the share of the training people's
own images it would drop (faces that cannot be a held-out person). docs/distill.md, "Faces from your
own photos".

    python tools/guard_cost.py [--catch 0.9 0.95 0.98 0.99] [overrides of conf/train.yaml ...]

The split is the distillation runs' (`+experiment=distill`, seed 42, View 1 unless overridden); the
descriptors are the teacher cache's (`siamese teach` first), centred on the training images' mean.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from hydra import compose, initialize_config_dir

from siamese.eval.bench.table import table
from siamese.io.paths import CONF_DIR
from siamese.model.preprocess import normalise
from siamese.model.teacher_cache import ERROR, load
from siamese.model.teacher_extra import Guard
from siamese.train.trainer import protocol_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catch", type=float, nargs="+", default=[0.9, 0.95, 0.98, 0.99])
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=distill", "model.input_size=64", *args.overrides])
    fc, _, _, faces, _, _ = protocol_data(cfg, np.random.default_rng(cfg.seed))
    raw, status, _ = load(cfg.cache_dir)
    raw = np.asarray(raw, np.float32).mean(1)
    ok = status != ERROR
    train = ok[faces.rows]
    held = np.setdiff1d(np.flatnonzero(ok), faces.rows)
    center = raw[faces.rows[train]].mean(0)
    t, h = normalise(raw[faces.rows[train]] - center), normalise(raw[held] - center)
    names = np.array([fc.refs[i].person for i in held])
    print(f"{cfg.protocol}: {len(t)} training images of {len(np.unique(faces.labels[train]))} people; "
          f"{len(h)} held-out images of {len(np.unique(names))} people")
    rows = []
    for catch in args.catch:
        start = time.perf_counter()
        g = Guard(t, faces.labels[train], h, names, catch)
        rows.append({"catch asked": catch, "bar": round(g.bar, 3),
                     "training people's faces dropped": round(g.training_drop_share(), 3),
                     "seconds": round(time.perf_counter() - start, 1)})
    print(table(rows))


if __name__ == "__main__":
    main()
