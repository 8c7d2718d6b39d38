"""Models: the networks (Keras, `networks` / `layers`), the one inference loader `Embedder`
(ONNX Runtime, else Keras) with everything about a model directory, several models as one
(`Ensemble`), the distillation teacher, and export to other formats.

Importing this package loads neither TensorFlow nor dlib: `networks`, `layers` and `export` import
Keras, and the teacher imports dlib only when it is built."""

from siamese.model.embedder import DEFAULT_MODEL, Embedder
from siamese.model.ensemble import Ensemble
from siamese.model.teacher import TeacherEmbedder

__all__ = ["DEFAULT_MODEL", "Embedder", "Ensemble", "TeacherEmbedder"]
