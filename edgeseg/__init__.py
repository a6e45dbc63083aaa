"""edgeseg: semantic segmentation from training to a camera on a vehicle or robot.

Three stages, three folders, one namespace:
``edgeseg`` (training, torch), ``edgeseg.export`` (ONNX / TensorRT),
``edgeseg.runtime`` (torch-free inference). This module imports nothing heavy.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

__version__ = "0.1.0"

# OpenCV reads its decode pixel limit once, when cv2 is first imported, and every edgeseg import
# passes here first: the limit for formats whose size edgeseg.runtime.image_size cannot read
# from the header (the same 134 M pixels as runtime.jpeg.MAX_IMAGE_PIXELS).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 27))

# In a source checkout the stages sit beside this folder (export/, runtime/) and pyproject.toml maps
# them into the namespace. An editable install does that mapping itself; run from the checkout root
# with a regular install, this folder shadows the installed package, so map them here the same way.
_HERE = Path(__file__).resolve().parent
_SIBLING_STAGES = {f"{__name__}.{name}": _HERE.parent / name for name in ("export", "runtime")
                   if not (_HERE / name).is_dir() and (_HERE.parent / name / "__init__.py").is_file()}


class _SiblingStageFinder(importlib.abc.MetaPathFinder):
    """Finds ``edgeseg.export`` and ``edgeseg.runtime`` in the checkout's export/ and runtime/."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 (importlib's signature)
        folder = _SIBLING_STAGES.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


if _SIBLING_STAGES and not any(isinstance(f, _SiblingStageFinder) for f in sys.meta_path):
    sys.meta_path.append(_SiblingStageFinder())
