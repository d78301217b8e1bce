"""The ``whisper-multi`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import WhisperMultiError


def _config_command(args: argparse.Namespace) -> int:
    """Print a preset's or a checkpoint's config.json, after a write/read round trip when --check is given."""
    import tempfile

    from .configuration import WhisperConfig

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisper-multi",
        description="Whisper in PyTorch, TensorFlow and Flax: convert checkpoints, check parity, transcribe.",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args))
    except WhisperMultiError as error:
        print(f"whisper-multi {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
