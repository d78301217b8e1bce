"""Token ids in and out of the tokenizers: read from ints, sequences, numpy arrays or framework tensors; returned as
lists, numpy arrays or a framework's tensors. No framework is imported until one is asked for."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

from whisper_multi.backends import to_tensor
from whisper_multi.errors import TokenizerError


def to_id_list(token_ids: Any) -> list[int]:
    """A flat list of Python ints from an int, a sequence, a numpy array or a framework tensor."""
    if hasattr(token_ids, "tolist"):  # numpy arrays and framework tensors (moved to host by their own tolist)
        token_ids = token_ids.tolist()
    if isinstance(token_ids, int):
        return [operator.index(token_ids)]
    if not isinstance(token_ids, Iterable) or isinstance(token_ids, str | bytes):
        raise TokenizerError(f"token ids must be an int or a sequence of ints, got {type(token_ids).__name__}")
    ids = []
    for value in token_ids:
        if hasattr(value, "tolist") and not isinstance(value, int):
            value = value.tolist()
        if isinstance(value, list):
            raise TokenizerError("decode() takes one sequence of token ids; use batch_decode() for a batch")
        try:
            ids.append(operator.index(value))
        except TypeError:
            raise TokenizerError(f"token id {value!r} is not an integer") from None
    return ids


def ids_as_tensor(ids: list[Any], return_tensors: str) -> Any:
    """Ids as numpy ("np") or a framework's tensor ("pt", "tf", "jax"), importing that framework only now."""
    import numpy as np

    try:
        array = np.asarray(ids, dtype=np.int64)
    except ValueError:
        raise TokenizerError("sequences of different lengths cannot form one tensor; pass padding=True") from None
    return to_tensor(array, return_tensors, unsupported=TokenizerError)
