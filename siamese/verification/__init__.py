"""1:1 verification, live: is this the enrolled person? The verification rules (`template_scores`,
`judge`) and their thresholds, a `Verifier` that judges every face of every frame against a
person's gallery faces, and `run`, which plays a camera, file or stream with a window or a
recorded video and log."""

from siamese.verification.live import annotate, display_available, run
from siamese.verification.verifier import (
    FALLBACK_VERIFICATION,
    RULES,
    VerificationRule,
    Verifier,
    calibrated_rule,
    judge,
    template_scores,
    verification_rule,
)

__all__ = ["FALLBACK_VERIFICATION", "RULES", "VerificationRule", "Verifier", "annotate", "calibrated_rule",
           "display_available", "judge", "run", "template_scores", "verification_rule"]
