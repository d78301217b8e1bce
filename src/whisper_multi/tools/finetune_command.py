"""``whisper-multi finetune``: the fine-tuning run (``whisper_multi.finetuning``) from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from whisper_multi.backends import BACKENDS

DESCRIPTION = (
    "Fine-tune MODEL on DATA with the chosen backend's optimizer step (PyTorch AdamW, Keras compiled with XLA, or "
    "a jitted optax step) and write the result to OUT, which every backend, evaluate, convert and transcribe load. "
    "DATA and --eval are folders in Hugging Face's audiofolder layout (audio files and a metadata.csv with "
    "file_name,transcription) or folders written by Dataset.save_to_disk. Every backend trains on the same "
    "batches: the order is drawn from --seed. Checkpoints go to OUT/checkpoints (each written whole before it "
    "counts); --resume continues the last one with the losses an uninterrupted run has.\n\n"
    "exit status: 0 done; 1 a Hub name that cannot be had; 2 a bad argument or data, or a checkpoint that does "
    "not match the options; 130 interrupted (Ctrl-C; the last checkpoint stays usable)."
)


def add_finetune_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "finetune",
        help="fine-tune a model on an audio folder or a saved dataset",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="checkpoint directory, model package or Hub name")
    parser.add_argument("data", metavar="DATA", help="audiofolder, or a folder written by Dataset.save_to_disk")
    parser.add_argument("out", metavar="OUT", help="output folder: the fine-tuned model and its checkpoints")
    parser.add_argument("--backend", choices=list(BACKENDS), default="pt", help="framework (default pt)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps to take")
    length.add_argument("--epochs", type=float, help="passes over DATA (default 1 when --steps is not given)")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per batch (default 8)")
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1, help="batches per optimizer step")
    parser.add_argument("--learning-rate", type=float, default=1e-5, help="peak learning rate (default 1e-5)")
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear warmup steps (default 0)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="clip the gradients' global norm (1.0)")
    parser.add_argument("--freeze-encoder", action="store_true", help="train the decoder only")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations, less memory")
    parser.add_argument("--bf16", action="store_true", help="compute in bfloat16 (weights stay float32)")
    parser.add_argument("--language", help="the transcripts' language (multilingual models), e.g. en")
    parser.add_argument("--task", choices=("transcribe", "translate"), help="the task token (multilingual models)")
    parser.add_argument("--eval", metavar="DATA", dest="eval_data", help="data whose WER is printed")
    parser.add_argument("--eval-every", type=int, help="evaluate every N steps (and at the end)")
    parser.add_argument("--checkpoint-every", type=int, help="write a checkpoint every N steps")
    parser.add_argument("--seed", type=int, default=0, help="batch order and random draws (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT")
    parser.set_defaults(handler=finetune_command, parser=parser)


def _options(args: argparse.Namespace) -> Any:
    from whisper_multi.training.options import TrainingOptions

    return TrainingOptions(
        steps=args.steps,
        epochs=args.epochs if args.epochs is not None or args.steps is not None else 1.0,
        batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm if args.max_grad_norm > 0 else None,
        freeze_encoder=args.freeze_encoder,
        gradient_checkpointing=args.gradient_checkpointing,
        bf16=args.bf16,
        seed=args.seed,
        language=args.language,
        task=args.task,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
    )


def finetune_command(args: argparse.Namespace) -> int:
    from whisper_multi.finetuning.loop import finetune, training_items
    from whisper_multi.longform.datasets_io import evaluation_data
    from whisper_multi.tools.cli import load_model_and_processor

    options = _options(args)
    items = training_items(args.data)  # the data's layout checked before the model loads
    eval_data = None if args.eval_data is None else evaluation_data(args.eval_data)
    model, processor = load_model_and_processor(args.model, args.backend)
    progress = StepProgress(sys.stderr.isatty())
    result = finetune(
        model, processor, items, args.out, options,
        eval_data=eval_data, resume=args.resume, on_step=progress, on_evaluation=progress.evaluation,
    )  # fmt: skip
    progress.close()
    final = f", final WER {result.final_wer:.4f}" if result.final_wer is not None else ""
    print(
        f"trained {len(result.losses)} steps, last loss {result.losses[-1]:.4f}{final}; model in {os.path.abspath(args.out)}"
    )
    return 0


class StepProgress:
    """Step, loss, learning rate and steps per second: redrawn in place on a terminal, one line a step in a log."""

    def __init__(self, in_place: bool):
        self.in_place, self.started, self.steps = in_place, time.perf_counter(), 0

    def __call__(self, record: Any) -> None:
        self.steps += 1
        rate = self.steps / max(time.perf_counter() - self.started, 1e-9)
        line = (
            f"step {record.step}/{record.total_steps}  loss {record.loss:.4f}  "
            f"lr {record.learning_rate:.3e}  {rate:.2f} steps/s"
        )
        sys.stderr.write(f"\r{line}\033[K" if self.in_place else line + "\n")
        sys.stderr.flush()

    def evaluation(self, step: int, wer: float) -> None:
        self.close()
        sys.stderr.write(f"step {step}: eval WER {wer:.4f}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.in_place:
            sys.stderr.write("\n")
            sys.stderr.flush()
