"""``OnnxWhisperForConditionalGeneration``: the ONNX graphs of ``whisper-multi export --format onnx``, run by
onnxruntime, with the speech-to-text API of the framework models (``generate``, ``detect_language``,
``encode_audio``, ``alignment_attention``), so ``transcribe`` and ``evaluate`` take it as they take any backend's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from whisper_multi.configuration import CONFIG_NAME, WhisperConfig
from whisper_multi.decoding.mixin import GenerationMixinCore, samples
from whisper_multi.errors import CheckpointError
from whisper_multi.export.graphs import DECODER_FILE, ENCODER_FILE
from whisper_multi.onnx.generation import OnnxBackend


class OnnxWhisperForConditionalGeneration(GenerationMixinCore):
    """Whisper's encoder and decoder as two onnxruntime sessions; decoding is the core's, as in every backend."""

    decoding_backend = OnnxBackend
    main_input_name = "input_features"

    def __init__(self, config: WhisperConfig, encoder: Any, decoder: Any):
        self.config = config
        self.encoder = encoder
        self.decoder = decoder
        self.generation_config: Any = None  # made from the config on first use, as the framework models do

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        providers: list[Any] | None = None,
        session_options: Any = None,
    ) -> OnnxWhisperForConditionalGeneration:
        """The graphs in the folder ``path`` (written by ``export(..., format="onnx")``), run on ``providers``
        (onnxruntime's; default: the CPU)."""
        directory = Path(path)
        missing = [name for name in (CONFIG_NAME, ENCODER_FILE, DECODER_FILE) if not (directory / name).is_file()]
        if missing:
            raise CheckpointError(
                f"{directory} has no {', '.join(missing)}: the onnx backend runs the graphs of an ONNX export; "
                f"write them with: whisper-multi export {directory} OUT --format onnx, then give OUT as the model"
            )
        providers = providers or ["CPUExecutionProvider"]

        def session(name: str) -> Any:
            return onnxruntime.InferenceSession(
                str(directory / name), sess_options=session_options, providers=providers
            )

        return cls(WhisperConfig.from_pretrained(directory), session(ENCODER_FILE), session(DECODER_FILE))

    def generate(
        self,
        input_features: Any,
        generation_config: Any = None,
        *,
        return_dict_in_generate: bool = False,
        output_scores: bool = False,
        seed: int | None = None,
        compiled: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """The framework models' ``generate`` (same arguments and outputs, numpy arrays); ``seed`` seeds sampling
        (default 0); ``compiled`` is accepted and changes nothing."""
        rng = (0 if seed is None else int(seed)) if samples(kwargs) else 0
        return self._generate(
            np.asarray(input_features, dtype=np.float32),
            rng,
            compiled,
            generation_config,
            return_dict_in_generate,
            output_scores,
            kwargs,
        )
