"""The mirror guard (``conformance.structure``) on the real files and on doctored copies, and what it protects: one
``from_ct2`` and one ``compiled`` default for the three backends, argument checks written once in the core."""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # conformance/ lives beside src/, not inside the installed package

from conformance.structure import MIXINS, MODEL_FILES, check_structure  # noqa: E402

from whisper_multi import WhisperConfig  # noqa: E402
from whisper_multi.backends import BACKENDS, backend  # noqa: E402
from whisper_multi.errors import InputError  # noqa: E402
from whisper_multi.modeling import arguments  # noqa: E402
from whisper_multi.weights import write_ct2  # noqa: E402
from whisper_multi.weights.table import canonical_parameters  # noqa: E402


def _doctored(tmp_path: Path, framework: str, old: str, new: str) -> dict[str, Path]:
    """Copies of the three model files, ``old`` replaced by ``new`` once in ``framework``'s."""
    files = {}
    for name, path in MODEL_FILES.items():
        files[name] = tmp_path / path.name
        shutil.copyfile(path, files[name])
    text = files[framework].read_text(encoding="utf-8")
    assert old in text
    files[framework].write_text(text.replace(old, new, 1), encoding="utf-8")
    return files


def _doctored_mixins(tmp_path: Path, mixin: str, framework: str, old: str, new: str) -> dict[str, dict[str, Path]]:
    mixins = {name: dict(paths) for name, paths in MIXINS.items()}
    source = mixins[mixin][framework]
    copy = tmp_path / f"{framework}_{source.name}"
    text = source.read_text(encoding="utf-8")
    assert old in text
    copy.write_text(text.replace(old, new, 1), encoding="utf-8")
    mixins[mixin][framework] = copy
    return mixins


# --- the guard -------------------------------------------------------------------------------------------------------
def test_the_real_files_pass():
    assert check_structure() == []


def test_the_guard_runs_as_a_module_and_exits_zero():
    result = subprocess.run(
        [sys.executable, "-m", "conformance.structure"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "share one skeleton" in result.stdout


@pytest.mark.parametrize(
    ("framework", "old", "new", "expected"),
    [
        ("tf", "self.fc1 = ", "self.fc_1 = ", ["TFWhisperEncoderLayer", "attributes missing: fc1", "fc_1"]),
        (
            "flax",
            "class FlaxWhisperDecoderLayer(",
            "class FlaxWhisperDecoderLayerRenamed(",
            ["FlaxWhisperDecoderLayer"],
        ),
    ],
)
def test_structure_drift_fails_naming_the_class_and_names(tmp_path, framework, old, new, expected):
    problems = "\n".join(check_structure(_doctored(tmp_path, framework, old, new)))
    assert problems
    for fragment in expected:
        assert fragment in problems


def test_a_method_renamed_in_one_file_is_named(tmp_path):
    files = _doctored(tmp_path, "tf", "    def _causal_mask(", "    def _causal_mask_renamed(")
    problems = "\n".join(check_structure(files))
    assert "WhisperDecoder: method _causal_mask is defined in pt, flax only" in problems
    assert "method _causal_mask_renamed is defined in tf only, with no twin and not listed (TFWhisperDecoder)" in (
        problems
    )


def test_a_method_added_to_one_flax_wrapper_is_named(tmp_path):
    old = "    def init_cache(self, batch_size: int, max_length: int | None = None) -> Cache:\n"
    files = _doctored(tmp_path, "flax", old, "    def drift(self) -> None:\n        pass\n\n" + old)
    problems = check_structure(files)
    assert any("method drift is defined in flax only" in line for line in problems), problems


def test_a_helper_without_twin_is_named(tmp_path):
    files = _doctored(tmp_path, "flax", "def _cross_entropy(", "def _cross_entropy_flax(")
    problems = check_structure(files)
    assert "helper _cross_entropy is defined in pt, tf only, with no twin and not listed" in problems
    assert "helper _cross_entropy_flax is defined in flax only, with no twin and not listed" in problems


def test_a_helper_between_mirrored_classes_is_named(tmp_path):
    anchor = "class TFWhisperEncoder(TFWhisperPreTrainedModel):"
    files = _doctored(tmp_path, "tf", anchor, "def _build(layer):\n    pass\n\n\n" + anchor)
    problems = "\n".join(check_structure(files))
    assert "tf: helper _build" in problems and "sits between mirrored classes" in problems


def test_a_loading_method_only_one_backend_has_is_named(tmp_path):
    mixins = _doctored_mixins(
        tmp_path,
        "PreTrainedModelMixin",
        "flax",
        "    def save_pretrained(",
        "    def from_npz(self):\n        pass\n\n    def save_pretrained(",
    )
    problems = check_structure(mixin_files=mixins)
    assert any("PreTrainedModelMixin: method from_npz is defined in flax only" in line for line in problems), problems


def test_a_mixin_that_drops_the_shared_base_is_named(tmp_path):
    mixins = _doctored_mixins(
        tmp_path,
        "PreTrainedModelMixin",
        "flax",
        "FlaxPreTrainedModelMixin(CheckpointLoadingMixin)",
        "FlaxPreTrainedModelMixin",
    )
    problems = check_structure(mixin_files=mixins)
    assert any("FlaxPreTrainedModelMixin has bases []" in line for line in problems), problems


# --- one compiled default --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", list(BACKENDS))
def test_generate_and_its_helpers_default_to_the_backends_compiled_mode(key):
    spec = backend(key)
    if not spec.available():
        pytest.skip(f"{spec.framework} is not installed")
    mixin = spec.model_class("conditional_generation")
    for method in (mixin.generate, mixin.detect_language, mixin.encode_audio):
        assert inspect.signature(method).parameters["compiled"].default is None, method.__qualname__
    from whisper_multi.decoding.mixin import compiled_mode

    model = _tiny_model(key)
    assert compiled_mode(model, None) is spec.compiled_by_default
    assert compiled_mode(model, True) is True and compiled_mode(model, False) is False
    assert _is_compiled(model._decoder_backend(None)) is spec.compiled_by_default
    assert _is_compiled(model._decoder_backend(not spec.compiled_by_default)) is not spec.compiled_by_default


def test_the_measured_defaults_are_eager_pytorch_and_compiled_tf_and_flax():
    assert [backend(key).compiled_by_default for key in ("pt", "tf", "flax")] == [False, True, True]


def _is_compiled(decoding_backend) -> bool:
    return decoding_backend.seam.compiled if hasattr(decoding_backend.seam, "compiled") else decoding_backend.compiled


def _tiny_config() -> WhisperConfig:
    return WhisperConfig(
        vocab_size=100, d_model=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=6,
        max_target_positions=12, num_mel_bins=8, decoder_start_token_id=1, pad_token_id=0, bos_token_id=0,
        eos_token_id=2, begin_suppress_tokens=[], suppress_tokens=[],
    )  # fmt: skip


def _tiny_model(key: str):
    return backend(key).model_class("conditional_generation")(_tiny_config())


# --- from_ct2: one definition, every backend -------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_flax_from_ct2_reads_a_ctranslate2_directory_as_from_pretrained_does(tmp_path):
    from whisper_multi.flax import FlaxWhisperForConditionalGeneration

    config = _tiny_config()
    rng = np.random.default_rng(0)
    tensors = {
        name: rng.standard_normal(spec.shape).astype(np.float32) for name, spec in canonical_parameters(config).items()
    }
    write_ct2(tmp_path, config, tensors)
    # A CTranslate2 directory keeps no decoder_start_token_id (its vocabulary file does): the config is passed.
    model = FlaxWhisperForConditionalGeneration.from_ct2(tmp_path, config, dtype=np.float32)
    same = FlaxWhisperForConditionalGeneration.from_pretrained(tmp_path, config=config)
    loaded, expected = model.state_dict(), same.state_dict()
    assert loaded.keys() == tensors.keys()
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)  # float32 in, float32 out: exact
        np.testing.assert_array_equal(expected[name], array)


@pytest.mark.parametrize("key", list(BACKENDS))
def test_from_ct2_is_the_shared_definition_in_every_backend(key):
    spec = backend(key)
    if not spec.available():
        pytest.skip(f"{spec.framework} is not installed")
    from whisper_multi.weights.loading import CheckpointLoadingMixin

    model_class = spec.model_class("conditional_generation")
    assert model_class.from_ct2.__func__ is CheckpointLoadingMixin.from_ct2.__func__


# --- the arguments, checked once in the core -------------------------------------------------------------------------
class _Tensor:
    def __init__(self, *shape, dtype="int64"):
        self.shape, self.dtype = shape, dtype


def test_decoder_call_resolves_flags_and_cache_lengths():
    config = _tiny_config()
    cache = tuple((_Tensor(1, 2, 5, 8), _Tensor(1, 2, 5, 8), None, None) for _ in range(2))
    dynamic = arguments.decoder_call(
        config, _Tensor(1, 3), None, None, None, cache, None, (None, None, None, None), lambda ids: (0, 5)
    )
    assert (dynamic.static, dynamic.past_length, dynamic.key_length, dynamic.use_cache) == (False, 5, 8, True)
    static = arguments.decoder_call(
        config, _Tensor(1, 1), None, None, None, cache, _Tensor(1), (None, True, None, False), lambda ids: None,
        checkpointing=True,
    )  # fmt: skip
    assert (static.static, static.past_length, static.key_length) == (True, 0, 5)
    assert (static.use_cache, static.output_attentions, static.return_dict) == (False, True, False)


def test_decoder_call_refuses_with_the_models_messages():
    config = _tiny_config()
    flags = (None, None, None, None)
    with pytest.raises(InputError, match="pass exactly one of decoder_input_ids and decoder_inputs_embeds"):
        arguments.decoder_call(config, None, None, None, None, None, None, flags, lambda ids: None)
    with pytest.raises(InputError, match=r"cache_position needs a preallocated cache"):
        arguments.decoder_call(config, _Tensor(1, 1), None, None, None, None, _Tensor(1), flags, lambda ids: None)
    with pytest.raises(InputError, match=r"holds token id 100; expected ids from 0 to 99"):
        arguments.decoder_call(config, _Tensor(1, 1), None, None, None, None, None, flags, lambda ids: (0, 100))
    with pytest.raises(InputError, match=r"decoder_attention_mask has shape \(2, 4\), expected \(1, 3\)"):
        arguments.check_decoder_attention_mask(_Tensor(2, 4), 1, 3, static=False)


def test_a_tuple_of_encoder_outputs_becomes_the_backends_output_class():
    from whisper_multi.modeling.outputs import BaseModelOutput

    output = arguments.as_encoder_output(("states",), BaseModelOutput)
    assert (output.last_hidden_state, output.hidden_states, output.attentions) == ("states", None, None)
    assert arguments.as_encoder_output(output, BaseModelOutput) is output
