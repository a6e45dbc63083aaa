import numpy as np
import pytest

from edgeseg.runtime.errors import ModelFormatError
from edgeseg.runtime.metadata import LAYOUT_UINT8, OUTPUT_CLASS_MAP, ModelMeta, default_palette


def make_meta(**kw):
    base = dict(classes=("road", "car"), palette=((128, 64, 128), (64, 0, 128)), input_size=(360, 480),
                ignore_index=11, precision="int8", int8_target="ort_cpu", extra={"calib_images": "32"})
    base.update(kw)
    return ModelMeta(**base)


def test_props_round_trip_keeps_every_field():
    meta = make_meta(input_layout=LAYOUT_UINT8, output_kind=OUTPUT_CLASS_MAP, dynamic_hw=True)
    props = meta.to_props()
    assert all(k.startswith("edgeseg.") and isinstance(v, str) for k, v in props.items())
    assert ModelMeta.from_props(props) == meta


def test_dict_round_trip_and_with_():
    meta = make_meta()
    assert ModelMeta.from_dict(meta.to_dict()) == meta
    fp16 = meta.with_(precision="fp16")
    assert fp16.precision == "fp16" and meta.precision == "int8"


def test_quantized_logits_round_trip_and_dequantize():
    meta = make_meta(output_quant=(0.25, 100))
    assert ModelMeta.from_props(meta.to_props()) == meta and ModelMeta.from_dict(meta.to_dict()) == meta
    q = np.array([[[[100, 104, 0, 255]]]], np.uint8)  # (N, C, H, W)
    np.testing.assert_array_equal(meta.float_logits(q), [[[[0.0, 1.0, -25.0, 38.75]]]])
    assert make_meta().float_logits(q).dtype == np.float32  # no output_quant: a plain cast
    for bad in [(0.0, 10), (0.1, 256), (0.1, -1)]:
        with pytest.raises(ModelFormatError, match="output_quant"):
            make_meta(output_quant=bad)
    with pytest.raises(ModelFormatError, match="output_quant"):
        make_meta(output_quant=(0.1, 3), output_kind=OUTPUT_CLASS_MAP)


def test_missing_metadata_says_how_to_fix():
    with pytest.raises(ModelFormatError, match="edgeseg export"):
        ModelMeta.from_props({"producer": "x"}, source="plain.onnx")


def test_malformed_metadata_names_the_source():
    props = make_meta().to_props()
    props["edgeseg.palette"] = "[[1, 2, 3]]"  # one colour for two classes
    with pytest.raises(ModelFormatError, match="m.onnx.*2 classes but 1 palette"):
        ModelMeta.from_props(props, source="m.onnx")
    props = make_meta().to_props()
    props["edgeseg.classes"] = "not json"
    with pytest.raises(ModelFormatError, match="m.onnx.*not valid JSON"):
        ModelMeta.from_props(props, source="m.onnx")


def test_unknown_precision_is_refused():
    with pytest.raises(ModelFormatError, match="precision"):
        make_meta(precision="int4")


def test_default_palette_is_distinct_and_stable():
    pal = default_palette(20)
    assert len(set(pal)) == 20
    assert pal == default_palette(20)
