"""The README stays true: its Python examples run, and CI runs its test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CLIP = ROOT / "tests" / "fixtures" / "audio" / "speech_en_short.wav"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    commands = [block.strip() for block in _blocks("bash") if "nox -s tests" in block]
    assert len(commands) == 1
    assert commands[0] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.slow
def test_python_examples_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch, tiny_cache: Path) -> None:
    """The examples load "openai/whisper-tiny.en" by name, offline, from a Hub cache holding tiny.en (conftest)."""
    for module in ("torch", "tensorflow", "jax", "flax"):
        pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)
    code = "\n".join(_blocks("python")).replace('"speech.wav"', repr(str(CLIP)))
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.splitlines()
    # tiny.en on the synthesized clip, in each framework (its words: tests/fixtures/audio/speech_en_short.txt).
    assert len(printed) == 3
    assert all("lazy dog while the farmer watches from the gate." in line for line in printed)
    assert (tmp_path / "my-model" / "config.json").is_file()
