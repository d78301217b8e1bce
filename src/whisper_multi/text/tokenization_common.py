"""The names this module held before it was split, for code that still imports them from here.

What the two tokenizers share now lives in ``byte_level`` (GPT-2's byte alphabet), ``tokenizer_files`` (reading and
writing the files, the first-merge repair, the special tokens the files imply), ``decoded_text`` (timestamp text,
offsets, clean-up), ``token_ids`` (ids in and out) and ``tokenizer_base`` (the shared API).
"""

from whisper_multi.text.byte_level import BYTE_DECODER, BYTE_ENCODER, bytes_to_unicode
from whisper_multi.text.decoded_text import clean_up_tokenization
from whisper_multi.text.token_ids import ids_as_tensor, to_id_list
from whisper_multi.text.tokenizer_base import WhisperTokenizerBase
from whisper_multi.text.tokenizer_files import (
    ENDOFTEXT,
    TokenizerData,
    lacks_first_merge,
    load_data_from_paths,
    load_pretrained_data,
    repair_first_merge_in_files,
    repaired_merges,
)

__all__ = [
    "BYTE_DECODER",
    "BYTE_ENCODER",
    "ENDOFTEXT",
    "TokenizerData",
    "WhisperTokenizerBase",
    "bytes_to_unicode",
    "clean_up_tokenization",
    "ids_as_tensor",
    "lacks_first_merge",
    "load_data_from_paths",
    "load_pretrained_data",
    "repair_first_merge_in_files",
    "repaired_merges",
    "to_id_list",
]
