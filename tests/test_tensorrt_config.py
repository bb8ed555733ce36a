"""`tensorrt_plan` config from the profile, the builder's TensorRT calls, the serving version check."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from vaani.build.repository import RepositorySettings, acoustic_config, all_configs
from vaani.build.tensorrt import builder, plan_guard
from vaani.build.tensorrt.metadata import metadata_path
from vaani.build.tensorrt.shape_profile import shape_profile
from vaani.gpu import GpuInfo
from vaani.serving.acoustic import AcousticSpec
from vaani.serving.contract import (
    ACOUSTIC,
    ATTENTION_MASK,
    AUDIO,
    ENSEMBLE,
    INPUT_VALUES,
    LOGITS,
    WINDOWS_STEP,
    version_dir,
)

SPEC = AcousticSpec(
    vocab_size=5,
    conv_kernel=(10, 3),
    conv_stride=(5, 2),
    uses_attention_mask=True,
    blank_id=1,
    word_delimiter="|",
    tokens=("<s>", "<pad>", "</s>", "<unk>", "|"),
)
SETTINGS = RepositorySettings(
    engine="tensorrt", max_batch_size=16, max_audio_seconds=20.0, bucket_seconds=2.0, profile_opt_batch=4
)


def test_profile_follows_from_settings():
    profile = shape_profile(SETTINGS)
    assert (profile.min_batch, profile.opt_batch, profile.max_batch) == (1, 4, 16)
    assert (profile.min_samples, profile.opt_samples, profile.max_samples) == (32_000, 160_000, 320_000)
    odd = RepositorySettings(
        engine="tensorrt", max_audio_seconds=21.0, bucket_seconds=2.0, profile_opt_seconds=99
    )
    assert shape_profile(odd).max_samples == 352_000  # rounded up to whole buckets
    assert shape_profile(odd).opt_samples == 352_000  # opt never beyond max


def test_tensorrt_needs_buckets():
    with pytest.raises(ValueError, match="bucket_seconds > 0"):
        acoustic_config(SPEC, RepositorySettings(engine="tensorrt"))


def test_tensorrt_plan_config():
    config = acoustic_config(SPEC, SETTINGS)
    assert config.platform == "tensorrt_plan" and not config.backend
    assert config.max_batch_size == 16
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    inputs = {i.name: (i.data_type, list(i.dims), i.allow_ragged_batch) for i in config.input}
    assert inputs == {
        INPUT_VALUES: (mc.TYPE_FP32, [-1], False),
        ATTENTION_MASK: (mc.TYPE_INT64, [-1], False),
    }
    assert [(o.name, list(o.dims)) for o in config.output] == [(LOGITS, [-1, 5])]
    parsed = text_format.Parse(text_format.MessageToString(config), mc.ModelConfig())
    assert parsed == config


def test_tensorrt_repository_pads_to_buckets_and_keeps_the_contract():
    configs = all_configs(SPEC, SETTINGS)
    assert configs[WINDOWS_STEP].parameters["bucket_samples"].string_value == "32000"
    assert configs[ENSEMBLE].max_batch_size <= configs[ACOUSTIC].max_batch_size
    assert [i.name for i in configs[ENSEMBLE].input if not i.optional] == [AUDIO]


def test_model_without_mask_gets_no_mask_input():
    spec = AcousticSpec(**{**SPEC.__dict__, "uses_attention_mask": False})
    assert [i.name for i in acoustic_config(spec, SETTINGS).input] == [INPUT_VALUES]


def test_strongly_typed_flag_on_tensorrt_10_and_11():
    flags = types.SimpleNamespace(STRONGLY_TYPED=1, PREFER_JIT_PYTHON_PLUGINS=3)
    assert builder.network_flags(types.SimpleNamespace(NetworkDefinitionCreationFlag=flags)) == 2
    without = types.SimpleNamespace(NetworkDefinitionCreationFlag=types.SimpleNamespace())
    assert builder.network_flags(without) == 0  # a release without the flag: always strongly typed


class _Recorder:
    """Stand-in for the `tensorrt` module: records the builder calls `build_plan` makes."""

    __version__ = "10.8.0.43"

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        recorder = self

        class Obj:
            def __init__(self, name: str) -> None:
                self._name = name

            def __getattr__(self, attribute: str):
                def call(*args, **kwargs):
                    recorder.calls.append((self._name, attribute, args))
                    return _RETURNS.get(attribute, lambda: Obj(attribute))()

                return call

        class Input:
            def __init__(self, name: str) -> None:
                self.name = name

        class Network(Obj):
            num_inputs = 2

            def get_input(self, index: int) -> Input:
                return Input([INPUT_VALUES, ATTENTION_MASK][index])

        class Cache(Obj):
            def serialize(self) -> bytes:
                return b"timing"

        _RETURNS = {
            "create_network": lambda: Network("network"),
            "parse_from_file": lambda: True,
            "build_serialized_network": lambda: b"plan-bytes",
            "get_timing_cache": lambda: Cache("cache"),
        }
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        self.Builder = lambda logger: Obj("builder")
        self.OnnxParser = lambda network, logger: Obj("parser")
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
        self.BuilderFlag = types.SimpleNamespace(TF32=7)
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)


def test_build_plan_calls_and_metadata(tmp_path, monkeypatch):
    fake = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(builder, "gpu_info", lambda: GpuInfo("NVIDIA H200", "9.0"))
    onnx_path = tmp_path / "model.fp16.onnx"
    onnx_path.write_bytes(b"onnx")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    profile = shape_profile(SETTINGS)
    plan = tmp_path / "out" / "model.plan"
    metadata = builder.build_plan(onnx_path, plan, profile, "fp16", cache)
    assert plan.read_bytes() == b"plan-bytes" and cache.read_bytes() == b"timing"
    assert ("builder", "create_network", (1,)) in fake.calls  # 1 << STRONGLY_TYPED
    shapes = [args for obj, name, args in fake.calls if name == "set_shape"]
    assert [s[0] for s in shapes] == [INPUT_VALUES, ATTENTION_MASK]
    assert shapes[0][1:] == ((1, 32_000), (4, 160_000), (16, 320_000))
    assert ("create_builder_config", "create_timing_cache", (b"old",)) in fake.calls
    assert not any(name == "set_flag" for _, name, _ in fake.calls)  # precision lives in the graph
    written = json.loads(metadata_path(plan).read_text())
    assert written == metadata
    assert written["tensorrt_version"] == "10.8.0.43" and written["precision"] == "fp16"
    assert written["gpu"] == {"name": "NVIDIA H200", "compute_capability": "9.0"}
    assert written["profile"]["max_samples"] == 320_000
    assert len(written["source_onnx_sha256"]) == 64


def test_server_version_from_dpkg_and_library_names():
    dpkg = "libnvinfer-dev 10.8.0.43-1+cuda12.8\nlibnvinfer10 10.8.0.43-1+cuda12.8\n"
    assert plan_guard.parse_dpkg(dpkg) == "10.8.0.43"
    assert plan_guard.parse_dpkg("libnvinfer-dev 10.8.0.43-1\n") is None
    names = ["libnvinfer.so.10", "libnvinfer.so.10.8.0", "libnvinfer.so"]
    assert plan_guard.parse_library_names(names) == "10.8.0"


def test_versions_match_on_every_reported_component():
    assert plan_guard.versions_match("10.8.0.43", "10.8.0.43")
    assert plan_guard.versions_match("10.8.0.43", "10.8.0")  # library name: no build number
    assert not plan_guard.versions_match("8.6.1.6", "8.6.1.2")  # Triton refuses these too
    assert not plan_guard.versions_match("10.8.0.43", "10.9.0.34")
    assert not plan_guard.versions_match("10.8", "10.8")  # too little to tell


def _repository(tmp_path: Path, version: str | None) -> Path:
    step = version_dir(tmp_path, ACOUSTIC)
    step.mkdir(parents=True)
    (step / "model.plan").write_bytes(b"plan")
    if version:
        (step / "model.plan.json").write_text(json.dumps({"tensorrt_version": version}))
    return tmp_path


def test_guard_accepts_matching_plan(tmp_path):
    verdicts = plan_guard.check_repository(_repository(tmp_path, "10.8.0.43"), "10.8.0.43")
    assert "matches" in verdicts[0]


def test_guard_refuses_other_tensorrt_with_what_to_do(tmp_path):
    with pytest.raises(plan_guard.PlanMismatch) as error:
        plan_guard.check_repository(_repository(tmp_path, "10.9.0.34"), "10.8.0.43")
    message = str(error.value)
    assert "TensorRT 10.9.0.34" in message and "TensorRT 10.8.0.43" in message
    assert "make engine" in message and "TRITON_TAG" in message


def test_guard_refuses_plan_without_metadata_and_empty_repository(tmp_path):
    with pytest.raises(plan_guard.PlanMismatch, match=r"no model\.plan\.json"):
        plan_guard.check_repository(_repository(tmp_path / "a", None), "10.8.0.43")
    with pytest.raises(plan_guard.PlanMismatch, match="Run `make engine`"):
        plan_guard.check_repository(tmp_path / "empty", "10.8.0.43")


def test_guard_entrypoint_exit_code_and_admin_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plan_guard, "server_tensorrt_version", lambda: "10.8.0.43")
    repository = _repository(tmp_path, "10.9.0.34")
    assert plan_guard.main(["--repository", str(repository), "--", "tritonserver"]) == 3
    assert "refusing to serve" in capsys.readouterr().err
    flag = "--http-restricted-api=model-repository:admin-key=${TRITON_ADMIN_KEY}"
    assert plan_guard.server_arguments([flag], {"TRITON_ADMIN_KEY": "s3cret"}) == [
        "--http-restricted-api=model-repository:admin-key=s3cret"
    ]
    random_key = plan_guard.server_arguments([flag], {})[0].rsplit("=", 1)[1]
    assert len(random_key) >= 32 and "$" not in random_key
