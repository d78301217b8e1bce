"""The ``whisper-multi`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from whisper_multi import __version__
from whisper_multi.backends import BACKENDS, INFERENCE_BACKENDS
from whisper_multi.errors import ModelNotAvailableError, WhisperMultiError
from whisper_multi.tools.export_command import add_export_parser
from whisper_multi.tools.finetune_command import add_finetune_parser

BACKEND_HELP = "framework (default pt); onnx runs the graphs of an ONNX export (--format onnx) with onnxruntime: MODEL is its folder"


def _config_command(args: argparse.Namespace) -> int:
    """Print a preset's or a checkpoint's config.json, after a write/read round trip when --check is given."""
    import tempfile

    from whisper_multi.configuration import WhisperConfig

    if args.preset:
        config = WhisperConfig.from_preset(args.preset)
    else:
        config = WhisperConfig.from_pretrained(args.path)
    if args.save:
        config.save_pretrained(args.save)
    if args.check:
        with tempfile.TemporaryDirectory() as directory:
            config.save_pretrained(directory)
            reloaded = WhisperConfig.from_pretrained(directory)
        if reloaded != config:
            print("config round trip changed the config", file=sys.stderr)
            return 1
        print("config round trip: identical", file=sys.stderr)
    sys.stdout.write(config.to_json_string())
    return 0


def _convert_command(args: argparse.Namespace) -> int:
    """Convert a checkpoint (a directory or file, an installed model package, a Hub name) to another format."""
    from whisper_multi.weights.packages import model_directory

    if args.from_package is None and args.source is None:
        args.parser.error("give SRC and DST, or --from-package NAME and DST")
    if args.from_package is not None and args.source is not None:
        args.parser.error("give either SRC or --from-package, not both")
    if args.source is None:
        return _convert_to(args, None)
    with model_directory(args.source) as (source, _):  # a directory, a file, a package or a Hub name
        return _convert_to(args, source)


def _convert_to(args: argparse.Namespace, source: Path | None) -> int:
    from whisper_multi.weights.convert import convert

    written = convert(
        source,
        args.destination,
        args.to,
        dtype=args.dtype,
        overwrite=args.overwrite,
        quiet=args.quiet,
        package=args.from_package,
        max_shard_size=args.max_shard_size,
    )
    if not args.quiet:
        print(f"wrote {args.to} checkpoint to {written}", file=sys.stderr)
    return 0


def _add_convert_parser(commands: argparse._SubParsersAction) -> None:
    from whisper_multi.weights.convert import DTYPES, TARGETS
    from whisper_multi.weights.packages import EMBEDDED_MODELS

    targets = "\n".join(f"  {name:<10} {text}" for name, text in TARGETS.items())
    convert = commands.add_parser(
        "convert",
        help="convert a Whisper checkpoint between formats",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Convert a Whisper checkpoint. The source format is detected from the files in SRC (model.safetensors, "
            "pytorch_model.bin, tf_model.h5, flax_model.msgpack, a CTranslate2 model.bin or an openai-whisper .pt "
            "file), or a Hub name (openai/whisper-tiny.en, from the Hub cache Transformers shares). DST is written "
            "atomically: nothing appears there unless the whole conversion succeeds.\n\n"
            f"targets (--to), each with generation_config.json, preprocessor_config.json and the tokenizer files:\n"
            f"{targets}"
        ),
    )
    convert.add_argument(
        "source",
        nargs="?",
        metavar="SRC",
        help="checkpoint directory, weight file or Hub name (openai/whisper-tiny.en)",
    )
    convert.add_argument("destination", metavar="DST", help="output directory (must not exist, see --overwrite)")
    convert.add_argument("--to", choices=list(TARGETS), default="canonical", help="target format (default: canonical)")
    convert.add_argument("--dtype", choices=DTYPES, help="cast every tensor (default: keep the stored dtype)")
    convert.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    convert.add_argument("--quiet", action="store_true", help="no progress bar or summary on stderr")
    convert.add_argument(
        "--from-package", choices=list(EMBEDDED_MODELS), help="convert a model shipped as a Python package (no SRC)"
    )
    convert.add_argument("--max-shard-size", default="5GB", help="split weight files above this size (default: 5GB)")
    convert.set_defaults(handler=_convert_command, parser=convert)


def _names(parser: argparse.ArgumentParser, option: str, text: str, allowed: Sequence[str]) -> list[str]:
    """The comma-separated names of ``option``; an unknown or missing one is an argument error (exit 2)."""
    from whisper_multi.tools.check import parse_names

    try:
        return parse_names(text, allowed, option)
    except WhisperMultiError as error:
        parser.error(str(error))
        raise  # parser.error exits


def _check_command(args: argparse.Namespace) -> int:
    """Load a checkpoint in every backend, compare each stage on a speech clip, print each row as it is measured."""
    from whisper_multi.tools.check import (
        CHECK_GROUPS,
        TOLERANCE_LEGEND,
        markdown_header,
        markdown_row,
        run_check,
        summary_line,
    )  # fmt: skip

    backends = _names(args.parser, "--backends", args.backends, list(BACKENDS))
    groups = _names(args.parser, "--stages", args.stages, CHECK_GROUPS) if args.stages else list(CHECK_GROUPS)
    if len(backends) < 2:
        print(f"whisper-multi check: only {', '.join(backends)} asked for: nothing to compare across backends; "
              "name two or more with --backends (exit 4)", file=sys.stderr)  # fmt: skip
        return 4
    from whisper_multi.weights.packages import describe_model

    print(
        f"whisper-multi check: {describe_model(args.model)}, backends {', '.join(backends)}, stages {', '.join(groups)}\n",
        flush=True,
    )
    print(markdown_header(with_config=False, with_source=False), flush=True)
    status = _StatusLine(enabled=sys.stderr.isatty())

    def show(row: Any) -> None:
        status.clear()
        print(markdown_row(row, with_config=False, with_source=False), flush=True)

    report = run_check(args.model, backends, args.audio, args.tolerance, groups, on_row=show, on_stage=status.show)
    status.clear()
    print(f"\n{summary_line(report.rows)} in {report.wall_s:.0f} s\n\n{TOLERANCE_LEGEND}")
    for name, reason in report.skipped.items():
        print(f"skipped {BACKENDS[name].framework} ({name}): {reason}")
    for row in report.failures:
        print(f"FAILED {row.stage} {row.pair}: {row.note or f'max abs {row.max_abs:.3g} > {row.tolerance:g}'}")
    for row in report.not_available:
        print(f"not available: {row.stage} {row.pair}: {row.note}")
    if report.exit_code == 4:
        print("fewer than two backends ran: nothing was compared across backends", file=sys.stderr)
    return report.exit_code


class _StatusLine:
    """One line on a terminal's stderr saying what is being measured, redrawn in place, cleared before output."""

    def __init__(self, enabled: bool):
        self.enabled, self.width = enabled, 0

    def show(self, text: str) -> None:
        if self.enabled:
            line = f"measuring {text} ..."
            sys.stderr.write("\r" + line.ljust(self.width))
            sys.stderr.flush()
            self.width = len(line)

    def clear(self) -> None:
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def _add_check_parser(commands: argparse._SubParsersAction) -> None:
    from whisper_multi.tools.check import CHECK_GROUPS, REAL_TOLERANCES
    from whisper_multi.weights.packages import DEFAULT_MODEL

    check = commands.add_parser(
        "check",
        help="compare a checkpoint across PyTorch, TensorFlow and Flax, stage by stage",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Load MODEL in every backend with its own from_pretrained, feed each stage the same inputs (the mel "
            "features of a speech clip; the decoder the same encoder states) and print the max and mean absolute "
            "difference of every stage for every pair of backends, each row as soon as it is measured. The float64 "
            "stage runs every backend in float64 too: the backends must agree to 1e-9 there, each backend's float32 "
            "outputs are measured against its own float64 ones, and a pair's float32 bound is the sum of its two "
            "backends' errors. A backend whose framework is not installed is skipped and listed.\n\n"
            "exit status: 0 every row passed; 1 a difference exceeds its tolerance or a stage failed, or a Hub name "
            "that cannot be had (not cached while offline, not on the Hub); 2 a bad "
            "argument or a checkpoint that cannot be read; 3 the only rows that did not pass are stages not "
            "available yet; 4 fewer than two backends ran (nothing compared); 130 interrupted (Ctrl-C)."
        ),
    )
    check.add_argument(
        "model", nargs="?", metavar="MODEL",
        help=f"checkpoint directory in any format the weight layer reads, an embedded model package or a Hub name "
        f"(default: {DEFAULT_MODEL}, Whisper tiny.en)",
    )  # fmt: skip
    check.add_argument(
        "--backends", default=",".join(BACKENDS), help=f"comma-separated, of {', '.join(BACKENDS)} (default: all)"
    )
    check.add_argument("--audio", metavar="FILE", help="speech clip (default: the bundled English sentence)")
    check.add_argument(
        "--tolerance", type=float, metavar="X",
        help="max abs float32 error allowed for logits, attention weights and loss: each backend's distance from its "
        "own float64 run (pairs may differ by the sum of two), or between backends when --stages leaves out "
        f"float64 (default {REAL_TOLERANCES.absolute:g} + {REAL_TOLERANCES.relative:g} x the largest magnitude; hidden "
        f"states {REAL_TOLERANCES.hidden_states:g} + {REAL_TOLERANCES.hidden_states_relative:g} x the largest magnitude "
        f"so far; gradients {REAL_TOLERANCES.gradients:g} relative)",
    )  # fmt: skip
    check.add_argument("--stages", help=f"comma-separated stage groups (default: all of {', '.join(CHECK_GROUPS)})")
    check.set_defaults(handler=_check_command, parser=check)


def _speech_to_text_class(backend: str) -> Any:
    """The backend's speech-to-text class, its framework imported with the start-up lines hidden: TensorFlow prints
    them from C++ onto the stderr file descriptor (oneDNN, CPU features) before any Python logging is set up. (Not
    through check's adapters, which turn TensorFlow's oneDNN kernels off for parity.)"""
    from whisper_multi.backends import model_class

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            return model_class(backend)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_model_and_processor(model: str, backend: str) -> tuple[Any, Any]:
    """The speech-to-text model of ``backend`` and its processor from ``model``: a checkpoint directory, a model
    package or a Hub name (what evaluate, finetune and export take)."""
    from whisper_multi.processing import WhisperProcessor
    from whisper_multi.weights.packages import model_directory

    with model_directory(model) as (directory, _):
        return _speech_to_text_class(backend).from_pretrained(directory), WhisperProcessor.from_pretrained(directory)


def _temperatures(start: float, increment: float) -> tuple[float, ...]:
    if increment <= 0:
        return (start,)
    count = round((1.0 - start) / increment) + 1 if start <= 1.0 else 1
    return tuple(round(start + index * increment, 6) for index in range(max(count, 1)))


class _ProgressBar:
    """Seconds of audio (or files) done out of the total, redrawn in place on a terminal's stderr (nothing in a log
    file)."""

    WIDTH = 30

    def __init__(self, name: str, enabled: bool, unit: str = "s"):
        self.name, self.enabled, self.drawn, self.total, self.unit = name, enabled, False, 0.0, unit

    def __call__(self, done: float, total: float) -> None:
        self.total = total
        if not self.enabled:
            return
        # A full bar at the end: int(30 * 70.9 / 70.9) is 29 in floating point.
        filled = self.WIDTH if done >= total else int(self.WIDTH * done / total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        count = f"{min(done, total):6.1f}/{total:.1f}" if self.unit == "s" else f"{min(done, total):.0f}/{total:.0f}"
        sys.stderr.write(f"\r{self.name}: [{bar}] {count} {self.unit}")
        sys.stderr.flush()
        self.drawn = True

    def close(self, finished: bool) -> None:
        """End the bar's line; full when the file was ``finished``."""
        if self.drawn and finished:
            self(self.total, self.total)
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False


def _transcribe_command(args: argparse.Namespace) -> int:
    """Transcribe each FILE and write the chosen formats; a file that fails is reported and the rest go on."""
    from whisper_multi.text.special_tokens import resolve_language_and_task, special_tokens_for_vocab
    from whisper_multi.text.tokenization_fast import WhisperTokenizerFast
    from whisper_multi.weights.packages import model_directory

    formats = _output_formats(args)
    if args.batch_size < 1:
        args.parser.error(f"--batch-size {args.batch_size}: expected 1 or more")
    with model_directory(args.model) as (directory, _):
        model = _speech_to_text_class(args.backend).from_pretrained(directory)
        tokenizer = WhisperTokenizerFast.from_pretrained(directory)
        # The request is checked against the model before any audio file is read.
        resolve_language_and_task(args.language, args.task, special_tokens_for_vocab(model.config.vocab_size))
        options = {
            "language": args.language, "task": args.task, "word_timestamps": args.word_timestamps,
            "num_beams": args.beam_size, "initial_prompt": args.initial_prompt, "model_dir": directory,
            "temperature": _temperatures(args.temperature, args.temperature_increment_on_fallback),
        }  # fmt: skip
        failed = [file for file in args.files if not _transcribe_file(model, tokenizer, file, formats, args, options)]
    return 1 if failed else 0


def _output_formats(args: argparse.Namespace) -> list[str]:
    from whisper_multi.longform.writers import FORMATS

    names = _names(args.parser, "--output-format", args.output_format, (*FORMATS, "all"))
    return list(FORMATS) if "all" in names else names


def _transcribe_file(
    model: Any, tokenizer: Any, file: str, formats: list[str], args: argparse.Namespace, options: dict[str, Any]
) -> bool:
    """Transcribe one file and write its formats; False, with one line on stderr, when it could not be done."""
    from whisper_multi.longform.transcribe import transcribe, transcribe_chunked
    from whisper_multi.longform.writers import write_result

    progress = _ProgressBar(os.path.basename(file), enabled=not args.quiet and sys.stderr.isatty())
    try:
        if args.batch_size > 1:
            result = transcribe_chunked(
                model, file, tokenizer, batch_size=args.batch_size, progress=progress, **options
            )
        else:
            result = transcribe(model, file, tokenizer, progress=progress, **options)
        progress.close(finished=True)
        written = [write_result(result, file, args.output_dir, fmt) for fmt in formats]
    except Exception as error:  # one bad file must not stop the others
        progress.close(finished=False)
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"whisper-multi transcribe: error: {file}: {message}", file=sys.stderr)
        return False
    if not args.quiet:
        names = ", ".join(path.name for path in written)
        print(f"{file}: wrote {names} to {os.path.abspath(args.output_dir)}", file=sys.stderr)
    return True


def _add_transcribe_parser(commands: argparse._SubParsersAction) -> None:
    from whisper_multi.weights.packages import DEFAULT_MODEL

    transcribe = commands.add_parser(
        "transcribe",
        help="transcribe audio files of any length to txt, srt, vtt, json or tsv",
        description=(
            "Transcribe each FILE (any format soundfile or FFmpeg reads) with long-form decoding: 30 s windows, "
            "temperature fallback, silence skipping. Writes <audio name>.<ext> per format into --output-dir, "
            "atomically, and says where. A file that cannot be read or transcribed is reported on one line and the "
            "others still run.\n\nexit status: 0 every file written; 1 a file failed, or a Hub name that cannot be had; "
            "2 a bad argument (a language "
            "or task the model cannot do, an unknown format, a model that cannot be read), checked before any audio "
            "is read; 130 interrupted (Ctrl-C), nothing half-written left behind."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    transcribe.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    transcribe.add_argument(
        "--model", metavar="MODEL",
        help=f"checkpoint directory, installed model package or Hub name (default: the embedded {DEFAULT_MODEL}, tiny.en)",
    )  # fmt: skip
    transcribe.add_argument("--backend", choices=list(INFERENCE_BACKENDS), default="pt", help=BACKEND_HELP)
    transcribe.add_argument(
        "--language", help='spoken language: name, code or token ("English", "en", "<|en|>"; default: detected, '
        "English for .en models)",
    )  # fmt: skip
    transcribe.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    transcribe.add_argument(
        "--output-format", "-f", default="txt,srt,vtt,json,tsv",
        help="comma-separated of txt, srt, vtt, json, tsv, or all (default: all)",
    )  # fmt: skip
    transcribe.add_argument("--output-dir", "-o", default=".", help="where to write the outputs (default: .)")
    transcribe.add_argument("--word-timestamps", action="store_true", help="time every word (json gets words)")
    transcribe.add_argument(
        "--batch-size", type=int, default=1,
        help="above 1: cut the audio at pauses into chunks of at most 24 s and decode this many windows at a time "
        "(faster; the initial prompt, not the previous text, comes before each window)",
    )  # fmt: skip
    transcribe.add_argument("--beam-size", type=int, default=1, help="beams at temperature 0 (default 1: greedy)")
    transcribe.add_argument("--temperature", type=float, default=0.0, help="first temperature (default 0)")
    transcribe.add_argument(
        "--temperature-increment-on-fallback", type=float, default=0.2,
        help="added to the temperature up to 1.0 when a window fails the thresholds (0: no fallback)",
    )  # fmt: skip
    transcribe.add_argument("--initial-prompt", help="text that comes before the audio (names, spelling, style)")
    transcribe.add_argument("--quiet", action="store_true", help="no progress bar")
    transcribe.set_defaults(handler=_transcribe_command, parser=transcribe)


def _evaluate_command(args: argparse.Namespace) -> int:
    """Transcribe every recording of DATA, print the error rates as a table and write them as JSON when asked."""
    from whisper_multi.longform.datasets_io import evaluation_data
    from whisper_multi.longform.evaluate import FileFailedError, evaluate

    if args.batch_size < 1:
        args.parser.error(f"--batch-size {args.batch_size}: expected 1 or more")
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        args.parser.error(f"--output {args.output}: its folder does not exist; create it first")
    data = evaluation_data(args.data, args.audio_column, args.text_column)  # its layout checked before the model loads
    model, processor = load_model_and_processor(args.model, args.backend)
    progress = _ProgressBar(os.path.basename(os.path.normpath(args.data)), sys.stderr.isatty(), unit="files")
    try:
        result = evaluate(model, processor, data, batch_size=args.batch_size, language=args.language, progress=progress)
    except FileFailedError as error:
        progress.close(finished=False)
        print(f"whisper-multi evaluate: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    progress.close(finished=True)
    print(_evaluation_table(result))
    if args.output:
        _write_evaluation(result, args.output)
        print(f"wrote the results of {len(result.files)} files to {os.path.abspath(args.output)}", file=sys.stderr)
    return 0


def _evaluation_table(result: Any) -> str:
    """The totals as a Markdown table, one row."""
    return (
        "| files | audio duration | WER | CER | real-time factor |\n"
        "|------:|---------------:|----:|----:|-----------------:|\n"
        f"| {len(result.files)} | {result.audio_duration:.1f} s | {100 * result.wer:.2f} % | {100 * result.cer:.2f} % "
        f"| {result.real_time_factor:.3f} |\n\nnormalizer: {result.normalizer}"
    )


def _write_evaluation(result: Any, output: str) -> None:
    """results.json, atomically: nothing half-written where the user looks."""
    import json
    from pathlib import Path

    from whisper_multi.jsonfile import atomic_write_text

    atomic_write_text(Path(output), json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")


def _add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="word and character error rates of a model on an audio folder or a saved dataset",
        description=(
            "Transcribe every recording of DATA as `whisper-multi transcribe` does and compare it with its "
            "transcript: both normalized (the English normalizer for English-only models or --language English, "
            "the basic one otherwise), the edits counted by jiwer. DATA is a folder in Hugging Face's audiofolder "
            "layout (audio files and a metadata.csv with file_name,transcription) or a folder written by "
            "Dataset.save_to_disk. Prints files, audio duration, WER, CER and the real-time factor; --output writes "
            "them as JSON with wer, cer and every file's reference, hypothesis and errors.\n\nexit status: 0 done; "
            "1 a recording could not be read or transcribed (no rates given, nothing written), or a Hub name that "
            "cannot be had; 2 a bad argument (a "
            "language the model cannot do, DATA in no known layout, a file its metadata names missing, a model "
            "that cannot be read), checked before any audio is read; 130 interrupted (Ctrl-C)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument(
        "model",
        metavar="MODEL",
        help="checkpoint directory, installed model package or Hub name (openai/whisper-tiny.en)",
    )
    evaluate.add_argument("data", metavar="DATA", help="audiofolder, or a folder written by Dataset.save_to_disk")
    evaluate.add_argument("--backend", choices=list(INFERENCE_BACKENDS), default="pt", help=BACKEND_HELP)
    evaluate.add_argument(
        "--batch-size", type=int, default=1,
        help="above 1: each recording cut at pauses, this many windows decoded at a time (transcribe's --batch-size)",
    )  # fmt: skip
    evaluate.add_argument(
        "--language", help='spoken language: name, code or token (default: English for .en models, else detected '
        "per file); English picks the English normalizer",
    )  # fmt: skip
    evaluate.add_argument("--output", "-o", metavar="FILE", help="write the results as JSON here (e.g. results.json)")
    evaluate.add_argument("--text-column", help="transcript column (default: transcription, text or sentence)")
    evaluate.add_argument("--audio-column", help="audio column of a saved dataset (default: its Audio column)")
    evaluate.set_defaults(handler=_evaluate_command, parser=evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisper-multi",
        description=(
            "Whisper in PyTorch, TensorFlow and Flax: convert checkpoints, check parity, transcribe, evaluate, "
            "fine-tune, export."
        ),
    )
    parser.add_argument("--version", action="version", version=f"whisper-multi {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    config = commands.add_parser("config", help="print a Whisper config.json (a preset or a checkpoint's)")
    source = config.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="tiny, tiny.en, base, ... large-v3-turbo")
    source.add_argument("--path", help="a checkpoint directory or config.json")
    config.add_argument("--save", metavar="DIR", help="also write config.json into DIR")
    config.add_argument("--check", action="store_true", help="verify that a save/load round trip is identical")
    config.set_defaults(handler=_config_command)

    _add_convert_parser(commands)
    _add_check_parser(commands)
    _add_transcribe_parser(commands)
    _add_evaluate_parser(commands)
    add_finetune_parser(commands)
    add_export_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log lines, whichever command loads it
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:  # the writers are atomic: nothing half-written is left
        print(f"whisper-multi {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModelNotAvailableError as error:  # the name may be right; this machine cannot get its files
        print(f"whisper-multi {args.command}: error: {error}", file=sys.stderr)
        return 1
    except WhisperMultiError as error:
        print(f"whisper-multi {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
