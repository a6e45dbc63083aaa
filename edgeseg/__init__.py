"""edgeseg: semantic segmentation from training to a camera on a vehicle or robot.

Three stages, three folders, one namespace:
``edgeseg`` (training, torch), ``edgeseg.export`` (ONNX / TensorRT),
``edgeseg.runtime`` (torch-free inference). This module imports nothing heavy.
"""

import os

__version__ = "0.1.0"

# OpenCV reads its decode pixel limit once, when cv2 is first imported, and every edgeseg import
# passes here first: the limit for formats whose size edgeseg.runtime.image_size cannot read
# from the header (the same 134 M pixels as runtime.jpeg.MAX_IMAGE_PIXELS).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 27))
