"""Recompute the last step of runs trained on another machine, here, on the real face cache.

    python tools/refinish.py checkpoints/RUN [checkpoints/RUN2 ...] [--cache DIR] [--lfw ROOT]

`tools/gpu_train.sh` trains on a WebP copy of the cache; this redoes each run's threshold,
cluster.json, test metrics and curves from its model/ parts on the real faces (see
`siamese.train.refinish`). What the training machine measured stays in metrics.json under
"test_on_training_machine".
"""

from __future__ import annotations

import argparse
import logging

from siamese.train import refinish


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--cache", default="data/cache/lfw_yunet_112_p0.0")
    ap.add_argument("--lfw", default=None, help="LFW root (default: LFW_ROOT, then data/lfw)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for run in a.runs:
        m = refinish(run, a.cache, a.lfw)
        t = m["test"]
        print(f"{run}: {m['protocol']} test accuracy {t['accuracy']:.4f} (AUC {t['auc']:.4f}, "
              f"threshold {t['threshold']:.3f} from validation), best epoch {m['best_epoch']}, "
              f"{m['train_minutes']} min on {m['backend']}")


if __name__ == "__main__":
    main()
