"""Keras -> ONNX with preprocessing inside the graph, parity against Keras, and the manifest."""
