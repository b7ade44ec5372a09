"""Keras -> ONNX with preprocessing inside the graph, parity against Keras, and the manifest.

``onnx_export`` converts each finished fold model (in its own process: tf2onnx memory is not given
back), ``parity`` refuses a file whose probabilities drift from Keras by more than 1e-4, and
``manifest_builder`` records hashes, parity, OOF references and operating points for the engine."""
