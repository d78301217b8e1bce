"""The shape limits of DEVELOPERS.md, measured by conformance/shape.py on every run."""

from __future__ import annotations

from pathlib import Path

from conformance import shape

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 700
# Sizes that are facts of a file format, not measurements of this code.
FORMAT_FACTS = {
    ("src/whisper_multi/weights/hf_flax.py", "'4 GiB'"),  # one msgpack ext's length is a uint32
    ("src/whisper_multi/weights/hf_flax.py", "'1 GiB'"),  # Flax's serialization chunks larger arrays
    ("src/whisper_multi/weights/safetensors_io.py", "'2GB'"),  # examples of the size strings accepted
    ("src/whisper_multi/weights/safetensors_io.py", "'500MB'"),
    ("src/whisper_multi/weights/safetensors_io.py", "'10GiB'"),
}


def test_no_function_outside_the_model_files_is_longer_than_the_limit() -> None:
    too_long = [f"{lines} lines: {place}" for lines, place in shape.function_lengths(shape.outside_model_files())
                if lines > MAX_FUNCTION_LINES]  # fmt: skip
    assert too_long == []


def test_no_module_outside_the_model_files_is_larger_than_the_limit() -> None:
    too_large = [f"{lines} lines: {place.path}" for lines, place in shape.module_lengths(shape.outside_model_files())
                 if lines > MAX_MODULE_LINES]  # fmt: skip
    assert too_large == []


def test_only_the_backend_registry_spells_backend_module_names() -> None:
    assert shape.files_spelling_backend_modules() == ["src/whisper_multi/backends.py"]


def test_no_comment_carries_a_measured_figure() -> None:
    figures = {(place.path, place.what): place for place in shape.measured_figures(shape.python_files(shape.SRC))}
    assert [str(figures[key]) for key in sorted(set(figures) - FORMAT_FACTS)] == []


def test_the_figure_pattern_finds_measurements_and_passes_model_facts(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text(
        '"""Packed weights: ~5.4 ms a step, 80 MB less, 2.6x faster than eager, 22% slower on AVX2."""\n'
        "# one 30 s window, 0.02 s per timestamp token, 4 heads, batch of 8\n"
    )
    assert [place.what for place in shape.measured_figures([module])] == [
        "'5.4 ms'",
        "'80 MB'",
        "'2.6x faster'",
        "'22% slower'",
    ]
