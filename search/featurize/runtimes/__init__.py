"""One module per runtime a model can run on (as immich's machine-learning `sessions/`):
`keras` (TensorFlow: builds, exports, and is the float32 reference), `openvino` and `onnx`
(an exported file, no TensorFlow). Which file and runtime serve a model is chosen in one
place, `search.featurize.served.forward_for`.

This package's `__init__` imports no runtime: each is imported where it is used.
"""
