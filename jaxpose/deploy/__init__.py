"""Deployment: ONNX export (`export`), model runners on JAX or onnxruntime (`predictor`), PyTorch weights in (`convert`)."""
