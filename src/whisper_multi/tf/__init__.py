"""TensorFlow Keras backend: the Whisper models with Transformers' TF names, arguments and outputs.

Keras 3 on the TensorFlow backend; imports tensorflow and keras only. ``KERAS_BACKEND`` must be unset or
"tensorflow" before Keras is first imported, otherwise importing this package raises ``BackendError``.

Numerics: TensorFlow's oneDNN CPU kernels (on by default) reorder floating-point sums, so CPU results differ from
PyTorch in the last digits (about 1e-6 relative). This package leaves ``TF_ENABLE_ONEDNN_OPTS`` to the user; set it
to 0 before TensorFlow is imported for the closest CPU agreement with PyTorch (the parity tests do).
"""

from __future__ import annotations

import os

from whisper_multi.errors import BackendError

_BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
if _BACKEND != "tensorflow":
    raise BackendError(
        f"{__name__} needs Keras on the TensorFlow backend, but KERAS_BACKEND={_BACKEND!r}; unset "
        f"KERAS_BACKEND or set KERAS_BACKEND=tensorflow before Python imports keras"
    )

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise BackendError(
        f"{__name__} needs Keras on the TensorFlow backend, but Keras runs on {keras.backend.backend()!r} "
        f"(from ~/.keras/keras.json or an earlier import); set KERAS_BACKEND=tensorflow before importing keras"
    )

from whisper_multi.modeling import outputs as shared  # noqa: E402
from whisper_multi.tf import modeling_tf_whisper  # noqa: E402
from whisper_multi.tf.loading import export_saved_model  # noqa: E402
from whisper_multi.tf.modeling_tf_whisper import *  # noqa: F403, E402 (the names in its __all__)
from whisper_multi.tf.outputs import *  # noqa: F403, E402 (the output classes)

__all__ = [*modeling_tf_whisper.__all__, *shared.__all__, "export_saved_model"]
