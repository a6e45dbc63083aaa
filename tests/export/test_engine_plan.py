"""The TensorRT build decisions, without TensorRT: version table, flags, ONNX flavour, profiles, names."""

from __future__ import annotations

import pytest

from edgeseg.export.engine_plan import (
    TrtVersion,
    calibration_cache_path,
    capabilities,
    engine_path_for,
    make_profile,
    plan_build,
    preferred_onnx,
    timing_cache_name,
    timing_cache_path,
)
from edgeseg.runtime.errors import BackendUnavailableError, ExportError, UsageError

TRT10 = capabilities("10.3.0.30")
TRT11 = capabilities("11.1.0")
TRT86 = capabilities("8.6.2")


# -- version table ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("10.3.0", TrtVersion(10, 3, 0)),
    ("10.3.0.30", TrtVersion(10, 3, 0, 30)),
    ("11.1", TrtVersion(11, 1, 0)),
    ("10.8.0.43+cuda12.8", TrtVersion(10, 8, 0, 43)),
])
def test_version_parsing(text, expected):
    assert TrtVersion.parse(text) == expected


def test_capability_table():
    assert (TRT10.strongly_typed_only, TRT10.precision_flags, TRT10.legacy_calibrator) == (False, True, True)
    assert (TRT11.strongly_typed_only, TRT11.precision_flags, TRT11.legacy_calibrator) == (True, False, False)
    assert TRT10.network_flags == ()  # EXPLICIT_BATCH is deprecated and ignored in 10
    assert TRT11.network_flags == ("STRONGLY_TYPED",)
    assert TRT86.network_flags == ("EXPLICIT_BATCH",)
    assert capabilities("12.0").strongly_typed_only


def test_too_old_tensorrt_is_refused_with_an_install_hint():
    with pytest.raises(BackendUnavailableError, match=r'edgeseg\[trt\]'):
        capabilities("8.2.1")


# -- flags per release and precision ----------------------------------------------------------------
@pytest.mark.parametrize("caps, precision, onnx, calib, flags, strong, use_calib", [
    (TRT10, "fp32", "fp32", False, (), False, False),
    (TRT10, "fp16", "fp32", False, ("FP16",), False, False),
    (TRT10, "fp16", "fp16", False, ("FP16",), False, False),
    (TRT10, "int8", "int8", False, ("INT8",), False, False),
    (TRT10, "int8", "fp32", True, ("INT8",), False, True),
    (TRT86, "int8", "fp32", True, ("INT8",), False, True),
    (TRT11, "fp32", "fp32", False, (), True, False),
    (TRT11, "fp16", "fp16", False, (), True, False),
    (TRT11, "int8", "int8", False, (), True, False),
])
def test_flags_per_release_and_precision(caps, precision, onnx, calib, flags, strong, use_calib):
    plan = plan_build(precision, caps, onnx, int8_target="tensorrt", calibration=calib)
    assert plan.builder_flags == flags
    assert plan.strongly_typed is strong
    assert plan.use_calibrator is use_calib
    assert plan.network_flags == caps.network_flags
    assert plan.precision == precision and plan.onnx_precision == onnx


def test_trt11_fp16_needs_the_fp16_onnx():
    with pytest.raises(ExportError, match=r"FP16-converted ONNX.*--precision fp16"):
        plan_build("fp16", TRT11, "fp32", onnx_name="x.onnx")


def test_trt11_has_no_calibrator():
    with pytest.raises(ExportError, match="removed the INT8 calibrator"):
        plan_build("int8", TRT11, "fp32", calibration=True)


def test_int8_from_fp32_without_calibration_says_what_to_export():
    with pytest.raises(ExportError, match=r"Q/DQ INT8 ONNX.*--precision int8.*calibration images"):
        plan_build("int8", TRT10, "fp32")


def test_ort_cpu_int8_flavour_is_refused_for_tensorrt():
    with pytest.raises(ExportError, match="symmetric int8"):
        plan_build("int8", TRT10, "int8", int8_target="ort_cpu")


@pytest.mark.parametrize("precision, onnx", [("fp32", "fp16"), ("fp32", "int8"), ("fp16", "int8"), ("int8", "fp16")])
def test_mismatched_onnx_is_refused(precision, onnx):
    with pytest.raises(ExportError, match="needs the"):
        plan_build(precision, TRT10, onnx)


def test_unknown_precision_suggests_close_match():
    with pytest.raises(UsageError, match="fp16"):
        plan_build("fp61", TRT10, "fp32")


def test_preferred_onnx_per_precision_and_release():
    assert preferred_onnx("fp16", "10.3") == "fp32"
    assert preferred_onnx("fp16", "11.0") == "fp16"
    assert preferred_onnx("int8", "10.3") == "int8"
    assert preferred_onnx("int8", "10.3", legacy_calibrator=True) == "fp32"
    assert preferred_onnx("fp32", "11.0") == "fp32"
    with pytest.raises(ExportError):
        preferred_onnx("int8", "11.0", legacy_calibrator=True)


# -- optimisation profiles --------------------------------------------------------------------------
def test_static_profile_from_dynamic_onnx():
    p = make_profile("input", (-1, 3, -1, -1), layout="NCHW_RGB_F32", imgsz="360x480")
    assert p.min == p.opt == p.max == (1, 3, 360, 480)
    assert p.is_static


def test_dynamic_profile_ranges():
    p = make_profile("input", (-1, 3, -1, -1), layout="NCHW_RGB_F32", imgsz=(360, 480), dynamic=True,
                     batch=2, max_batch=8)
    assert p.min == (1, 3, 180, 240)
    assert p.opt == (2, 3, 360, 480)
    assert p.max == (8, 3, 720, 960)
    assert p.contains((4, 3, 200, 300)) and not p.contains((9, 3, 360, 480))


def test_dynamic_profile_keeps_a_floor_on_small_sides():
    p = make_profile("input", (-1, 3, -1, -1), layout="NCHW_RGB_F32", imgsz=(48, 40), dynamic=True)
    assert p.min[2:] == (32, 32) and p.opt[2:] == (48, 40)


def test_static_batch_profile():
    p = make_profile("input", (-1, 3, -1, -1), layout="NCHW_RGB_F32", imgsz=256, batch=4)
    assert p.min == p.max == (4, 3, 256, 256)


def test_nhwc_layout_profile_uses_axes_1_and_2():
    p = make_profile("frame", (-1, -1, -1, 3), layout="NHWC_BGR_U8", imgsz="360x480", dynamic=True)
    assert p.opt == (1, 360, 480, 3)
    assert p.min == (1, 180, 240, 3)


def test_fixed_onnx_shape_is_kept_and_a_different_imgsz_refused():
    p = make_profile("input", (1, 3, 360, 480), layout="NCHW_RGB_F32")
    assert p.min == p.max == (1, 3, 360, 480)
    with pytest.raises(UsageError, match="fixed input 360x480"):
        make_profile("input", (1, 3, 360, 480), layout="NCHW_RGB_F32", imgsz="512x512")
    with pytest.raises(UsageError, match="fixed batch of 1"):
        make_profile("input", (1, 3, 360, 480), layout="NCHW_RGB_F32", batch=2)


def test_default_imgsz_comes_from_metadata_else_error():
    p = make_profile("input", (-1, 3, -1, -1), layout="NCHW_RGB_F32", default_hw=(64, 96))
    assert p.opt == (1, 3, 64, 96)
    with pytest.raises(UsageError, match="--imgsz"):
        make_profile("input", (-1, 3, -1, -1), layout="NCHW_RGB_F32")


def test_bad_batch_settings():
    with pytest.raises(UsageError, match="--dynamic"):
        make_profile("input", (-1, 3, 64, 64), layout="NCHW_RGB_F32", max_batch=4)
    with pytest.raises(UsageError, match="smaller than --batch"):
        make_profile("input", (-1, 3, 64, 64), layout="NCHW_RGB_F32", batch=4, max_batch=2, dynamic=True)
    with pytest.raises(UsageError, match="at least 1"):
        make_profile("input", (-1, 3, 64, 64), layout="NCHW_RGB_F32", batch=0)


# -- file names -------------------------------------------------------------------------------------
def test_engine_names():
    assert engine_path_for("out/x.onnx", "fp16").as_posix() == "out/x.fp16.engine"
    assert engine_path_for("out/x.fp16.onnx", "fp16").as_posix() == "out/x.fp16.engine"
    assert engine_path_for("out/x.int8.onnx", "int8").as_posix() == "out/x.int8.engine"
    assert engine_path_for("out/x.int8.trt.onnx", "int8").as_posix() == "out/x.int8.engine"


def test_timing_cache_is_keyed_by_release_and_gpu(tmp_path):
    name = timing_cache_name("10.3.0.30", "NVIDIA Jetson AGX Orin", (8, 7))
    assert name == "trt10.3.0.30-nvidia-jetson-agx-orin-sm87.timing.cache"
    engine = tmp_path / "x.fp16.engine"
    assert timing_cache_path(None, engine, "10.3.0", "RTX 4090", "8.9") == tmp_path / "trt10.3.0-rtx-4090-sm89.timing.cache"
    assert timing_cache_path(False, engine, "10.3.0", "RTX 4090", "8.9") is None
    assert timing_cache_path(tmp_path, engine, "10.3.0", "RTX 4090", "8.9").parent == tmp_path
    assert timing_cache_path(tmp_path / "my.cache", engine, "10.3.0", "RTX 4090", "8.9") == tmp_path / "my.cache"


def test_calibration_cache_is_keyed_by_onnx_hash(tmp_path):
    a = calibration_cache_path(tmp_path / "x.int8.engine", "ab" * 32)
    b = calibration_cache_path(tmp_path / "x.int8.engine", "cd" * 32)
    assert a != b and a.name.startswith("x.int8.trtcalib-")
