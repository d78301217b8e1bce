"""The stage groups of a comparison, each a function of the ``Run`` registered in ``GROUPS`` (in pipeline order: the
first failing group of a pair is where the frameworks part), and ``compare``, which runs the selected ones."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from whisper_multi.configuration import WhisperConfig
from whisper_multi.tools.check.cached import cached
from whisper_multi.tools.check.export import EXPORT_STAGES, exports
from whisper_multi.tools.check.float64 import float64
from whisper_multi.tools.check.frameworks import MEL_TENSOR_TYPES, native_layout, pairs, to_numpy
from whisper_multi.tools.check.gradients import gradients
from whisper_multi.tools.check.inputs import SAMPLE_RATE, Inputs
from whisper_multi.tools.check.rows import (
    ERROR,
    NOT_AVAILABLE,
    SKIPPED,
    Row,
    describe_error,
    differences,
    token_differences,
)
from whisper_multi.tools.check.run import Run
from whisper_multi.tools.check.stage_names import (
    CACHED_STAGES,
    CLASSIFICATION_LABELS,
    DECODER_STAGES,
    E2E_STAGES,
    ENCODER_STAGES,
    FLOAT64_GROUP_STAGES,
    GENERATION_SETTINGS,
)
from whisper_multi.tools.check.subject import Subject
from whisper_multi.tools.check.tolerances import Float64Reference, Tolerances
from whisper_multi.tools.check.training import training


def mel(run: Run) -> None:
    """The numpy extractor's features returned as each framework's tensor type: must be identical."""
    if run.inputs.audio is None:
        return
    from whisper_multi.features import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=run.subject.config.num_mel_bins)
    expected = extractor(run.inputs.audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
    for name in run.wanted():
        kind = MEL_TENSOR_TYPES[name]
        if name in run.subject.skipped:
            run.unavailable("mel_features", f"np-{kind}", SKIPPED, f"{name}: {run.subject.skipped[name]}")
            continue
        try:
            found = extractor(run.inputs.audio, sampling_rate=SAMPLE_RATE, return_tensors=kind).input_features
            measured = differences(expected, to_numpy(found))
            run.row("mel_features", f"np-{kind}", measured, note=f"shape {expected.shape}")
        except Exception as error:
            run.unavailable("mel_features", f"np-{kind}", ERROR, describe_error(error))


def weights(run: Run) -> None:
    """Every parameter as each framework holds it, against the canonical tensor in that framework's layout."""
    from whisper_multi.weights.table import canonical_parameters

    specs = canonical_parameters(run.subject.config)
    for name in run.wanted():
        blocked = run.blocked([name])
        if blocked:
            run.unavailable("weights", name, *blocked)
            continue
        held = run.adapter(name).native_weights(run.model(name))
        largest, total, count, differing = 0.0, 0.0, 0, []
        for canonical, spec in specs.items():
            expected = native_layout(np.asarray(run.subject.tensors[canonical]), spec.kind, name)
            found = held.get(canonical)
            if found is None or found.shape != expected.shape:
                shape = None if found is None else found.shape
                differing.append(f"{canonical} (shape {shape}, expected {expected.shape})")
                largest = float("inf")
                continue
            worst, mean = differences(expected, found)
            if worst > 0:
                differing.append(canonical)
            largest, total, count = max(largest, worst), total + mean * found.size, count + found.size
        note = f"{len(specs)} parameters, bit-exact" if not differing else (
            f"{len(differing)} of {len(specs)} parameters differ, first: {differing[0]}"
        )  # fmt: skip
        run.row("weights", name, (largest, total / max(count, 1)), note=note)


def encoder(run: Run) -> None:
    """The same mel features -> the last encoder state, every hidden state, the attention weights."""
    run.forward_all()
    for stage in ENCODER_STAGES:
        run.compare_outputs(stage, stage, run.outputs, ("forward",))


def decoder(run: Run) -> None:
    """The same encoder states (the reference framework's) and token ids -> the decoder's outputs."""
    run.decode_all()
    note = f"fed the {run.reference} encoder states" if run.reference else ""
    for stage in DECODER_STAGES:
        run.compare_outputs(stage, stage, run.decoded, ("forward", "decode"), note)


def e2e(run: Run) -> None:
    """Mel features -> logits, and the loss with labels."""
    run.forward_all()
    run.compare_outputs("e2e_logits", "logits", run.outputs, ("forward",), "from the mel features")
    run.compare_outputs("loss", "loss", run.outputs, ("forward",), "from the mel features, with labels")


def classification(run: Run) -> None:
    """Audio-classification logits: the encoder's weights plus a seeded head."""
    config, tensors = classification_weights(run.subject.config, run.subject.tensors)
    features = run.inputs.features
    logits: dict[str, dict[str, Any]] = {}
    for name in run.frameworks:
        adapter = run.adapter(name)

        def classify(adapter: Any = adapter) -> dict[str, Any]:
            model = adapter.build(config, tensors, "audio_classification")
            return {"logits": to_numpy(adapter.run(model, input_features=features).logits)}

        found = run.guarded("classification", name, classify)
        if found is not None:
            logits[name] = found
    note = "encoder weights + seeded head, weighted layer sum"
    run.compare_outputs("classification_logits", "logits", logits, ("classification",), note)


def classification_weights(
    config: WhisperConfig, tensors: Mapping[str, np.ndarray], seed: int = 7
) -> tuple[WhisperConfig, dict[str, np.ndarray]]:
    """An audio classifier on ``tensors``' encoder: weighted layer sum and a seeded random head."""
    from whisper_multi.weights.table import canonical_parameters

    classifier_config = WhisperConfig.from_dict(
        config.to_dict(), use_weighted_layer_sum=True, num_labels=CLASSIFICATION_LABELS, id2label=None, label2id=None
    )
    rng = np.random.default_rng(seed)
    found = {}
    for name, spec in canonical_parameters(classifier_config, "audio_classification").items():
        if name.startswith("encoder."):
            found[name] = np.asarray(tensors[f"model.{name}"])
        elif spec.kind == "layer_weights":
            found[name] = rng.standard_normal(spec.shape).astype(np.float32)
        else:
            found[name] = (0.05 * rng.standard_normal(spec.shape)).astype(np.float32)
    return classifier_config, found


def generation(run: Run) -> None:
    """Token ids of ``generate`` (greedy, beam search, timestamps), when the models have it."""
    features = run.inputs.generation_features
    features = run.inputs.features if features is None else features
    for stage, settings in GENERATION_SETTINGS.items():
        tokens, missing = _generated(run, stage, features, settings)
        for a, b in pairs(run.wanted()):
            pair = f"{a}-{b}"
            blocked = run.blocked([a, b], stage)
            if blocked:
                run.unavailable(stage, pair, *blocked)
            elif a not in tokens or b not in tokens:
                run.unavailable(stage, pair, NOT_AVAILABLE, f"not implemented yet: {', '.join(missing)}")
            else:
                length = np.atleast_2d(tokens[a]).shape[-1]
                measured = token_differences(tokens[a], tokens[b])
                run.row(stage, pair, measured, measure="tokens", note=f"{length} ids; {settings or 'greedy'}")


def _generated(
    run: Run, stage: str, features: np.ndarray, settings: dict[str, Any]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """(framework -> the token ids its ``generate`` gave, the models without a ``generate``)."""
    tokens: dict[str, np.ndarray] = {}
    missing = []
    for name in run.frameworks:
        model = run.model(name)
        if getattr(model, "generate", None) is None:
            missing.append(f"{type(model).__name__}.generate")
            continue
        kwargs = {"max_new_tokens": run.inputs.generation_new_tokens, **settings}
        found = run.guarded(stage, name, functools.partial(run.adapter(name).generate, model, features, **kwargs))
        if found is not None:
            tokens[name] = found
    return tokens, missing


@dataclass(frozen=True)
class StageGroup:
    """Stages measured together: the stage names of their rows and the function that measures them."""

    stages: tuple[str, ...]
    measure: Callable[[Run], None]


# The stage groups in pipeline order.
GROUPS: dict[str, StageGroup] = {
    "mel": StageGroup(("mel_features",), mel),
    "weights": StageGroup(("weights",), weights),
    "float64": StageGroup(FLOAT64_GROUP_STAGES, float64),
    "encoder": StageGroup(ENCODER_STAGES, encoder),
    "decoder": StageGroup(DECODER_STAGES, decoder),
    "e2e": StageGroup(E2E_STAGES, e2e),
    "cached": StageGroup(CACHED_STAGES, cached),
    "gradients": StageGroup(("gradients",), gradients),
    "training": StageGroup(("training_losses", "training_weights"), training),
    "classification": StageGroup(("classification_logits",), classification),
    "generation": StageGroup(tuple(GENERATION_SETTINGS), generation),
    "export": StageGroup(EXPORT_STAGES, exports),
}
STAGE_GROUPS: tuple[str, ...] = tuple(GROUPS)
STAGES: dict[str, tuple[str, ...]] = {name: group.stages for name, group in GROUPS.items()}


def compare(
    subject: Subject,
    inputs: Inputs,
    tolerances: Tolerances,
    groups: Iterable[str] = STAGE_GROUPS,
    timings: dict[str, float] | None = None,
    reference64: Float64Reference | None = None,
    on_row: Callable[[Row], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> list[Row]:
    """Every selected stage of ``subject``, one row per framework pair (or per framework); the seconds each stage
    group took are added to ``timings``. The ``float64`` group fills ``reference64``; without that group, the
    float32 errors already in it (those of the same weights) give the derived pair bounds. ``on_row`` is called
    with each row as it is measured, ``on_stage`` with each stage group's name before it runs."""
    chosen = set(groups)
    selected = [name for name in GROUPS if name in chosen]
    details = bool({"encoder", "float64"} & chosen)  # hidden states and attentions only when compared
    run = Run(subject, inputs, tolerances, reference64, on_row, details)
    for name in selected:
        started = time.perf_counter()
        if on_stage is not None:
            on_stage(name)
        GROUPS[name].measure(run)
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
    return run.rows
