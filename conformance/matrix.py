"""The conformance matrix: configs x weight sources x stages x framework pairs.

Configs: three random ones (seeded numpy weights, no framework involved in making them) and the two real
checkpoints shipped as packages. Sources: "direct" (the canonical tensors handed to each backend in memory through
the weight layer) and one save/load round trip per on-disk format: the weight layer's writer puts the tensors in
a temporary directory, every backend loads that directory with its own ``from_pretrained``. The direct models run
every stage; the models loaded from files run the stages that see the weights (``FORMAT_GROUPS``): their weights
must be bit-exact, and then every other output is the direct one.
"""

from __future__ import annotations

import dataclasses
import gc
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conformance.configs import (
    CONFIGS,
    ConfigSpec,
    random_config,
    random_features,
    random_labels,
    random_tensors,
    random_token_ids,
    synthetic_vocabulary,
)
from whisper_multi.configuration import WhisperConfig
from whisper_multi.tools import check
from whisper_multi.weights.convert import Checkpoint, read_checkpoint, write_checkpoint

RANDOM_NEW_TOKENS = 8  # generated per random model: enough to exercise every rule, few compiled steps
FORMATS = ("canonical", "pt", "tf", "flax", "openai", "ct2")
SOURCES = ("direct", *FORMATS)
FORMAT_GROUPS = ("weights", "e2e")
QUICK_CONFIGS = ("tiny", "odd", "large-v3-shape", "tiny.en", "base")
QUICK_REAL_SOURCES = ("direct", "canonical", "ct2")  # --quick: the real checkpoint's own format and ours
# --quick's configs for the costly groups (the full run has them on every config, the real ones included): training
# on a random config (each config compiles its step), export on none (four artifacts written and compiled per config;
# tests/test_export.py checks the real tiny.en's).
QUICK_GROUP_CONFIGS = {"training": ("tiny",), "export": ()}


# --- one config's weights and inputs --------------------------------------------------------------------------------
@dataclass
class Weights:
    spec: ConfigSpec
    config: WhisperConfig
    tensors: dict[str, np.ndarray]
    checkpoint: Checkpoint  # what the weight layer's writers are given

    @property
    def tolerances(self) -> check.Tolerances:
        return check.REAL_TOLERANCES if self.spec.real else check.RANDOM_TOLERANCES


def load_weights(name: str) -> Weights:
    spec = CONFIGS[name]
    if spec.real:
        checkpoint = read_checkpoint(package=spec.package)
        tensors = {key: np.asarray(array, dtype=np.float32) for key, array in checkpoint.tensors.items()}
        return Weights(spec, checkpoint.config, tensors, dataclasses.replace(checkpoint, tensors=tensors))
    config = random_config(name)
    tensors = random_tensors(config)
    checkpoint = Checkpoint("canonical", config, tensors, None, vocabulary=synthetic_vocabulary(config.vocab_size))
    return Weights(spec, config, tensors, checkpoint)


def random_inputs(config: WhisperConfig, audio: np.ndarray) -> check.Inputs:
    return check.Inputs(
        random_features(config), random_token_ids(config), random_labels(config), audio=audio,
        classification_labels=np.array([2, 0]), generation_new_tokens=RANDOM_NEW_TOKENS,
    )  # fmt: skip


# --- the run --------------------------------------------------------------------------------------------------------
@dataclass
class Selection:
    configs: Sequence[str] = tuple(CONFIGS)
    sources: Sequence[str] = SOURCES
    groups: Sequence[str] = check.STAGE_GROUPS
    frameworks: Sequence[str] = check.FRAMEWORKS
    quick: bool = False

    def groups_for(self, spec: ConfigSpec) -> list[str]:
        if not self.quick:
            return list(self.groups)
        return [group for group in self.groups if spec.name in QUICK_GROUP_CONFIGS.get(group, (spec.name,))]

    def sources_for(self, spec: ConfigSpec) -> list[str]:
        if self.quick and spec.real:
            return [source for source in self.sources if source in QUICK_REAL_SOURCES]
        return list(self.sources)


@dataclass
class MatrixResult:
    rows: list[check.Row]
    timings: dict[str, dict[str, float]]  # config -> step -> seconds
    inputs: dict[str, dict[str, Any]]  # config -> what the models were fed
    configs: dict[str, dict[str, Any]]
    skipped: dict[str, str]


def _describe_inputs(inputs: check.Inputs) -> dict[str, Any]:
    return {
        "features": list(inputs.features.shape),
        "decoder_input_ids": inputs.decoder_input_ids.tolist(),
        "labels": inputs.labels.tolist(),
    }


def _config_summary(weights: Weights) -> dict[str, Any]:
    config = weights.config
    return {
        "description": weights.spec.description,
        "d_model": config.d_model,
        "encoder_layers": config.encoder_layers,
        "decoder_layers": config.decoder_layers,
        "heads": config.encoder_attention_heads,
        "vocab_size": config.vocab_size,
        "num_mel_bins": config.num_mel_bins,
        "parameters": int(sum(array.size for array in weights.tensors.values())),
        "tolerances": dataclasses.asdict(weights.tolerances),
    }


def run_matrix(
    selection: Selection, audio: np.ndarray, progress: Callable[[str], None] = lambda line: None
) -> MatrixResult:
    rows: list[check.Row] = []
    result = MatrixResult(rows, {}, {}, {}, {})
    with tempfile.TemporaryDirectory(prefix="whisper-multi-conformance-") as scratch:
        for name in selection.configs:
            timings = result.timings.setdefault(name, {})
            started = time.perf_counter()
            weights = load_weights(name)
            result.configs[name] = _config_summary(weights)
            direct = check.build_subject(name, "direct", weights.config, weights.tensors, selection.frameworks)
            result.skipped.update(direct.skipped)
            timings["build"] = time.perf_counter() - started
            inputs = (
                check.audio_inputs(audio, weights.config, direct)
                if weights.spec.real
                else random_inputs(weights.config, audio)
            )
            result.inputs[name] = _describe_inputs(inputs)
            reference64 = check.Float64Reference()  # the float32 errors of these weights, for every source's bounds
            for source in selection.sources_for(weights.spec):
                progress(f"{name} / {source}")
                if source == "direct":
                    rows += check.compare(
                        direct,
                        inputs,
                        weights.tolerances,
                        selection.groups_for(weights.spec),
                        step_timings := {},
                        reference64,
                    )
                    timings.update({f"direct {group}": seconds for group, seconds in step_timings.items()})
                    direct.models.clear()
                    gc.collect()
                    continue
                groups = [group for group in selection.groups if group in FORMAT_GROUPS]
                if groups:
                    rows += _round_trip(weights, source, Path(scratch), selection, inputs, groups, timings, reference64)
            timings["total"] = time.perf_counter() - started
            progress(f"{name}: {timings['total']:.1f} s")
    return result


def _round_trip(
    weights: Weights,
    source: str,
    scratch: Path,
    selection: Selection,
    inputs: check.Inputs,
    groups: Sequence[str],
    timings: dict[str, float],
    reference64: check.Float64Reference,
) -> list[check.Row]:
    """Write the weights as ``source`` with the weight layer, load every backend from the directory, compare."""
    started = time.perf_counter()
    directory = scratch / f"{weights.spec.name}-{source}"
    directory.mkdir()
    try:
        write_checkpoint(weights.checkpoint, directory, source, dtype="float32")
    except Exception as error:
        note = f"writing {source}: {check._describe_error(error)}"
        return [check.Row(weights.spec.name, source, "weights", "write", None, None, 0.0, check.ERROR, note=note)]
    finally:
        timings[f"write {source}"] = time.perf_counter() - started
    subject = check.build_subject(
        weights.spec.name, source, weights.config, weights.tensors, selection.frameworks,
        loader=lambda backend: backend.load(directory),
    )  # fmt: skip
    step_timings: dict[str, float] = {}
    rows = check.compare(subject, inputs, weights.tolerances, groups, step_timings, reference64)
    timings.update({f"{source} {group}": seconds for group, seconds in step_timings.items()})
    subject.models.clear()
    for path in sorted(directory.iterdir()):
        path.unlink()
    directory.rmdir()
    gc.collect()
    return rows
