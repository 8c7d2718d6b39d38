"""Telling the truth about a model: LFW View 1 / View 2 evaluation, verification metrics, the
calibrations fitted on people it never saw, open-set identification, plots, and every benchmark
(`siamese.eval.bench`). No TensorFlow: models run on ONNX Runtime."""
