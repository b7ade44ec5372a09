"""Faster variants of each exported fold model (OpenVINO fp32/bf16/INT8, ONNX Runtime INT8), kept only where an
accuracy gate on held-out images says they decide like fp32. Never imports TensorFlow."""
