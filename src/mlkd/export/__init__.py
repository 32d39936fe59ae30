"""Shipping a trained model: ONNX / safetensors exports, per-label thresholds, prediction.

``mlkd.export.api`` exports a run or checkpoint (``mlkd export``), ``mlkd.export.predict``
predicts with an ONNX export using only numpy, Pillow and onnxruntime (no torch). This package
imports nothing itself, so the light path stays light.
"""
