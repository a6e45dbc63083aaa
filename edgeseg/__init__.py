"""edgeseg: semantic segmentation from training to a camera on a vehicle or robot.

Three stages, three folders, one namespace:
``edgeseg`` (training, torch), ``edgeseg.export`` (ONNX / TensorRT),
``edgeseg.runtime`` (torch-free inference). This module imports nothing heavy.
"""

__version__ = "0.1.0"
