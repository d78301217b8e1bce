"""``whisper-multi export``: a deployable artifact (``whisper_multi.export``)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from whisper_multi.errors import WhisperMultiError

DESCRIPTION = (
    "Write MODEL as one artifact that runs the encoder and the whole greedy decoding: a TensorFlow SavedModel, a "
    "TFLite file (float32, float16 weights or dynamic-range int8) or jax.export "
    "bytes; the decoder prefix (language, task, timestamps) is fixed in the artifact. Or, with --format onnx, as "
    "the PyTorch model's encoder and decoder graphs (float32 or int8) for the onnx backend (transcribe --backend "
    "onnx --model OUT), which takes the decoding options when it runs. OUT is a new folder holding the artifact "
    "beside the config, tokenizer and preprocessor files; it appears only once complete.\n\n"
    "exit status: 0 written; 1 a bad argument, an OUT that exists or cannot be written, or a model that cannot be "
    "had (one line on stderr, nothing left behind); 130 interrupted."
)


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    from whisper_multi.export import FORMATS, QUANTIZATIONS

    parser = commands.add_parser(
        "export",
        help="write a SavedModel, TFLite, ONNX or jax.export artifact",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="checkpoint directory, model package or Hub name")
    parser.add_argument("out", metavar="OUT", help="output folder (must not exist)")
    # Formats and quantizations are checked by ExportOptions, so a wrong one is one line and exit 1.
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--quantize", help=f"{' or '.join(QUANTIZATIONS)} (default: float32)")
    parser.add_argument("--max-new-tokens", type=int, help="the most tokens generated (default: up to 448 positions)")
    parser.add_argument("--language", help="the language token of a multilingual model, e.g. fr (required there)")
    parser.add_argument("--task", help="transcribe or translate (multilingual models)")
    parser.add_argument("--timestamps", action="store_true", help="predict timestamp tokens")
    parser.add_argument("--batch-size", type=int, default=1, help="the batch the artifact takes (default 1)")
    parser.set_defaults(handler=export_command, parser=parser)


def export_command(args: argparse.Namespace) -> int:
    try:
        return _export(args)
    except WhisperMultiError as error:
        print(f"whisper-multi export: error: {error}", file=sys.stderr)
        return 1


def _export(args: argparse.Namespace) -> int:
    from whisper_multi.export import ExportOptions, artifact_size, export
    from whisper_multi.export.folder import check_destination
    from whisper_multi.tools.cli import load_model_and_processor

    options = ExportOptions(
        format=args.format, quantize=args.quantize, max_new_tokens=args.max_new_tokens, language=args.language,
        task=args.task, timestamps=args.timestamps, batch_size=args.batch_size,
    )  # fmt: skip
    check_destination(Path(args.out))  # before the model loads: a wrong OUT costs nothing
    model, processor = load_model_and_processor(args.model, options.spec.backend)
    arguments = {name: value for name, value in dataclasses.asdict(options).items() if name != "format"}
    out = export(model, args.out, options.format, processor=processor, **arguments)
    size = artifact_size(out) / 1e6
    print(f"{options.format} ({options.quantize or 'float32'}): {size:.1f} MB in {os.path.abspath(out)}")
    return 0
