"""Fine-tuning, written once: options, the learning-rate schedule, the batch order, the collator, checkpoints and
the loop. Each backend's ``training`` module adds its optimizer step in its own idiom."""

from whisper_multi.training.collator import SpeechSeq2SeqCollator
from whisper_multi.training.options import TrainingOptions

__all__ = ["SpeechSeq2SeqCollator", "TrainingOptions"]
