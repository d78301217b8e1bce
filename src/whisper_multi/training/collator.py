"""Training examples to model inputs: log-mel features, labels padded with -100 and the shifted decoder inputs.

Transformers' ``DataCollatorSpeechSeq2SeqWithPadding`` as written in its fine-tuning guide: the labels are the
tokenizer's ids of ``<|startoftranscript|>`` [language] [task] ``<|notimestamps|>`` text ``<|endoftext|>`` less the
leading ``<|startoftranscript|>`` (the model puts ``decoder_start_token_id`` back when it shifts), padded with -100
so the loss skips the padding. Label lengths are rounded up to ``label_pad_multiple`` so a compiled train step
sees few shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from whisper_multi.errors import InputError
from whisper_multi.modeling.utils import IGNORE_INDEX, shift_tokens_right


class SpeechSeq2SeqCollator:
    """``collator(waveforms, texts)`` → ``{"input_features", "labels", "decoder_input_ids"}`` numpy arrays."""

    def __init__(
        self,
        processor: Any,
        decoder_start_token_id: int,
        pad_token_id: int,
        max_target_positions: int,
        label_pad_multiple: int = 16,
        language: str | None = None,
        task: str | None = None,
    ):
        self.feature_extractor = processor.feature_extractor
        self.tokenizer = processor.tokenizer
        self.decoder_start_token_id = decoder_start_token_id
        self.pad_token_id = pad_token_id
        self.max_target_positions = max_target_positions
        self.label_pad_multiple = label_pad_multiple
        self.tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)

    @classmethod
    def for_model(
        cls, processor: Any, config: Any, label_pad_multiple: int = 16, **prefix: Any
    ) -> SpeechSeq2SeqCollator:
        return cls(
            processor,
            decoder_start_token_id=config.decoder_start_token_id,
            pad_token_id=config.pad_token_id,
            max_target_positions=config.max_target_positions,
            label_pad_multiple=label_pad_multiple,
            **prefix,
        )

    def labels(self, texts: Sequence[str]) -> np.ndarray:
        """(batch, length) int64 label ids, -100 after each text's ``<|endoftext|>``."""
        rows = [self._label_ids(text) for text in texts]
        longest = max(len(row) for row in rows)
        length = min(-(-longest // self.label_pad_multiple) * self.label_pad_multiple, self.max_target_positions)
        labels = np.full((len(rows), length), IGNORE_INDEX, dtype=np.int64)
        for index, row in enumerate(rows):
            labels[index, : len(row)] = row
        return labels

    def _label_ids(self, text: str) -> list[int]:
        ids = list(self.tokenizer(text)["input_ids"])
        if ids and ids[0] == self.decoder_start_token_id:
            ids = ids[1:]  # the shift puts it back
        if len(ids) > self.max_target_positions:
            raise InputError(
                f"a transcript has {len(ids)} label tokens, more than max_target_positions="
                f"{self.max_target_positions}: split it or leave the example out ({text[:60]!r}...)"
            )
        return ids

    def features(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(batch, n_mels, 3000) float32 log-mel features, each clip padded to 30 s."""
        return np.asarray(self.feature_extractor(list(waveforms), sampling_rate=16000)["input_features"], np.float32)

    def __call__(self, waveforms: Sequence[np.ndarray], texts: Sequence[str]) -> dict[str, np.ndarray]:
        if len(waveforms) != len(texts):
            raise InputError(f"{len(waveforms)} waveforms but {len(texts)} transcripts: one transcript per clip")
        labels = self.labels(texts)
        return {
            "input_features": self.features(waveforms),
            "labels": labels,
            "decoder_input_ids": shift_tokens_right(labels, self.pad_token_id, self.decoder_start_token_id),
        }
