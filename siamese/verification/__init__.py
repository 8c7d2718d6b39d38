"""1:1 verification, live: is this the enrolled person? The two thresholds (`judge`), a `Verifier`
that judges every face of every frame against a person's gallery faces, and `run`, which plays a
camera, file or stream with a window or a recorded video and log."""

from siamese.verification.live import annotate, display_available, run
from siamese.verification.verifier import FALLBACK_VERIFICATION, Verifier, calibrated_threshold, judge

__all__ = ["FALLBACK_VERIFICATION", "Verifier", "annotate", "calibrated_threshold", "display_available", "judge",
           "run"]
