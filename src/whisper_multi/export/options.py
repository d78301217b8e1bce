"""What one export is asked for, checked before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

from whisper_multi.errors import InputError
from whisper_multi.export.formats import FORMATS, QUANTIZATIONS, ExportFormat

TASKS = ("transcribe", "translate")


@dataclass(frozen=True)
class ExportOptions:
    """``format`` (``FORMATS``); ``quantize``: None (float32), "int8" or "float16" where the format has it;
    ``max_new_tokens``: the most tokens the artifact generates (None: up to the model's 448 positions);
    ``language`` / ``task`` / ``timestamps``: the decoder prefix baked into the artifact; ``batch_size``: the
    batch its signature takes (fixed: the decoding loop is compiled for it)."""

    format: str
    quantize: str | None = None
    max_new_tokens: int | None = None
    language: str | None = None
    task: str | None = None
    timestamps: bool = False
    batch_size: int = 1

    def __post_init__(self) -> None:
        spec = self.spec  # checks the format
        if self.quantize is not None and self.quantize not in QUANTIZATIONS:
            raise InputError(f"quantize={self.quantize!r} is not a quantization; expected one of {QUANTIZATIONS}")
        if self.quantize is not None and self.quantize not in spec.quantizations:
            have = ", ".join(spec.quantizations) or "none: export float32"
            raise InputError(f"format {spec.name} has no {self.quantize} quantization; it has {have}")
        if self.task is not None and self.task not in TASKS:
            raise InputError(f"task={self.task!r}; expected one of {TASKS}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens={self.max_new_tokens}; expected a positive number of tokens")
        if self.batch_size < 1:
            raise InputError(f"batch_size={self.batch_size}; expected a positive batch size")
        if not spec.holds_decoding and self.decoding_options():
            raise InputError(
                f"format {spec.name} holds the model's graphs, not one decoding; drop "
                f"{', '.join(self.decoding_options())}: the onnx backend takes them when it runs (transcribe "
                "--backend onnx --language ..., or generate(language=...))"
            )

    def decoding_options(self) -> list[str]:
        """The options given that fix the artifact's decoding, by name."""
        given = {
            "max_new_tokens": self.max_new_tokens is not None,
            "language": self.language is not None,
            "task": self.task is not None,
            "timestamps": self.timestamps,
            "batch_size": self.batch_size != 1,
        }
        return [name for name, is_given in given.items() if is_given]

    @property
    def spec(self) -> ExportFormat:
        if self.format not in FORMATS:
            raise InputError(f"format {self.format!r} is not an export format; expected one of {', '.join(FORMATS)}")
        return FORMATS[self.format]
