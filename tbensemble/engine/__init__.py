"""The ONNX Runtime engine: sessions and providers, TTA, rank averaging, CAM, the predict pipeline.

Never imports TensorFlow: edge servers install the package without it."""
