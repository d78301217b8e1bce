"""Read and write CTranslate2 Whisper models (``model.bin`` + ``config.json`` + vocabulary), as faster-whisper uses.

The parts: ``ct2_layout`` (the format, its constants, and which canonical tensors each CTranslate2 variable holds),
``ct2_container`` (the binary container, memory-mapped), ``ct2_read`` (canonical tensors and a WhisperConfig from a
model) and ``ct2_write`` (a model from canonical tensors, in float32, float16 or int8).

No framework is imported here: ``ctranslate2`` itself is not needed to read or write.
"""

from __future__ import annotations

from whisper_multi.weights.ct2_layout import (
    CONFIG_FILE,
    MODEL_FILE,
    READ_BINARY_VERSIONS,
    SPEC_NAME,
    SPEC_REVISION,
    VOCABULARY_FILES,
    WRITE_DTYPES,
    WRITTEN_BINARY_VERSION,
    Link,
    ct2_links,
)
from whisper_multi.weights.ct2_read import CT2Model, matching_preset, read_ct2, read_vocabulary, special_token_fields
from whisper_multi.weights.ct2_write import write_ct2

__all__ = [
    "CONFIG_FILE",
    "MODEL_FILE",
    "READ_BINARY_VERSIONS",
    "SPEC_NAME",
    "SPEC_REVISION",
    "VOCABULARY_FILES",
    "WRITE_DTYPES",
    "WRITTEN_BINARY_VERSION",
    "CT2Model",
    "Link",
    "ct2_links",
    "matching_preset",
    "read_ct2",
    "read_vocabulary",
    "special_token_fields",
    "write_ct2",
]
