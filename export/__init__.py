"""edgeseg.export: checkpoint -> ONNX -> FP16 / INT8 -> TensorRT, with parity and accuracy reports."""
