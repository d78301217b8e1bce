"""The package's promises: the core imports no framework, the CLI runs, the public names resolve."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import whisper_multi
from whisper_multi.tools.cli import main

FRAMEWORKS = ("torch", "tensorflow", "jax", "flax", "keras")
CORE_MODULES = ("configuration", "errors", "features", "audio", "processing", "backends", "text", "text.tokenization",
                "text.tokenization_fast", "text.special_tokens", "text.normalizers", "decoding", "longform.transcribe",
                "longform.timing", "weights", "weights.table", "weights.ct2", "tools.cli", "tools.check")  # fmt: skip


def test_core_imports_no_framework() -> None:
    modules = [f"whisper_multi.{name}" for name in CORE_MODULES]
    probe = (
        "import importlib, importlib.util, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"loaded = sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("name", whisper_multi.__all__)
def test_public_names_resolve(name: str) -> None:
    module = pytest.importorskip(f"whisper_multi.{whisper_multi._LAZY[name]}") if name in whisper_multi._LAZY else None
    assert getattr(module or whisper_multi, name) is getattr(whisper_multi, name)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        whisper_multi.Nope  # noqa: B018


def test_cli_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: whisper-multi" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"whisper-multi {whisper_multi.__version__}"


def test_cli_config_round_trip(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--preset", "large-v3", "--check", "--save", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "config round trip: identical" in captured.err
    printed = json.loads(captured.out)
    assert (printed["num_mel_bins"], printed["vocab_size"]) == (128, 51866)
    assert json.loads((tmp_path / "config.json").read_text()) == printed


def test_cli_reports_errors_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--preset", "gigantic"]) == 2
    assert capsys.readouterr().err.startswith("whisper-multi config: error: unknown preset 'gigantic'")


def test_console_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "whisper_multi", "config", "--preset", "tiny"], capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert json.loads(result.stdout)["d_model"] == 384
