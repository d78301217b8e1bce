"""Fine-tuning the Keras models: ``compile``/``fit`` on their own loss, the run's AdamW and the loop's ``Trainer``.

A user trains as with any Keras model; the batches are dicts holding the labels, the loss is the model's own and the
decoder inputs are the labels shifted in the graph, so the whole step compiles with XLA::

    model.compile(optimizer=make_optimizer(model, options, total_steps), jit_compile=True)
    model.fit(to_tf_dataset(batches), epochs=3, callbacks=[keras.callbacks.ModelCheckpoint("best.keras")])

``model.save("x.keras")`` and ``keras.models.load_model("x.keras")`` round-trip: the models are registered with
Keras' serialization and their config is the ``WhisperConfig``. ``Trainer`` is the fine-tuning loop's backend step
(``whisper_multi.training.trainer``): the same optimizer, one XLA-compiled step per micro-batch, Keras' gradient
accumulation, the step's random draws seeded from ``step_seed``.

The optimizer is ``TorchAdamW``, not Keras' ``AdamW``: Keras adds epsilon to ``sqrt(v)`` before the bias correction
("epsilon hat"), torch to ``sqrt(v_hat)``; where gradients are near epsilon the two updates differ by far more than
the 1e-4 the three backends agree to, so the update is written out with torch's formula.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from whisper_multi.configuration import WhisperConfig
from whisper_multi.errors import CheckpointError, InputError
from whisper_multi.modeling.utils import IGNORE_INDEX
from whisper_multi.tf.loading import canonical_state_dict, model_variables
from whisper_multi.training.optimizer import is_decayed
from whisper_multi.training.options import TrainingOptions, step_seed
from whisper_multi.training.schedule import learning_rate
from whisper_multi.training.trainer import OPTIMIZER_STATE

SERIALIZATION_PACKAGE = "whisper_multi"  # models and optimizer pieces register as "whisper_multi>ClassName"


# --- the learning rate and the optimizer -----------------------------------------------------------------------------
@keras.saving.register_keras_serializable(SERIALIZATION_PACKAGE)
class WhisperLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The core schedule (``training.schedule.learning_rate``) on the optimizer's step counter.

    Keras hands a schedule the count of ``apply`` calls, which under gradient accumulation counts micro-batches: it
    is divided by ``gradient_accumulation_steps`` back to optimizer steps. Computed in float32 (TPUs have no
    float64), which rounds the rate torch's ``LambdaLR`` computes in Python floats by at most an ulp or two.
    """

    def __init__(self, options: TrainingOptions | Mapping[str, Any], total_steps: int):
        self.options = options if isinstance(options, TrainingOptions) else TrainingOptions.from_dict(dict(options))
        self.total_steps = int(total_steps)

    def __call__(self, step: Any) -> tf.Tensor:
        micro_batches = tf.cast(step, tf.int64)
        optimizer_steps = tf.cast(micro_batches // self.options.gradient_accumulation_steps, tf.float32)
        rate = learning_rate(optimizer_steps, self.options, self.total_steps, xp=tf.experimental.numpy)
        return tf.cast(rate, tf.float32)

    def get_config(self) -> dict[str, Any]:
        return {"options": self.options.to_dict(), "total_steps": self.total_steps}


@keras.saving.register_keras_serializable(SERIALIZATION_PACKAGE)
class TorchAdamW(keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with ``torch.optim.AdamW``'s update: epsilon added to the bias-corrected
    ``sqrt(v_hat)``. Weight decay (``p -= lr * wd * p`` before the update), clipping and accumulation are Keras'."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        gradient = tf.cast(gradient, dtype)
        step = tf.cast(self.iterations + 1, dtype)  # optimizer steps, accumulation taken into account
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign(m, m + (gradient - m) * (1 - beta_1))
        self.assign(v, v * beta_2 + gradient * gradient * (1 - beta_2))
        step_size = lr / (1 - tf.pow(beta_1, step))
        denominator = tf.sqrt(v) / tf.sqrt(1 - tf.pow(beta_2, step)) + tf.cast(self.epsilon, dtype)
        self.assign_sub(variable, step_size * (m / denominator))  # torch's addcdiv order


def make_optimizer(model: Any, options: TrainingOptions, total_steps: int) -> keras.optimizers.Optimizer:
    """The run's AdamW for ``model``: ``options``' betas, epsilon and weight decay, the core learning-rate schedule,
    gradients clipped to ``max_grad_norm`` (global norm; None: no clipping), Keras' gradient accumulation over
    ``gradient_accumulation_steps`` micro-batches (the mean gradient), and no weight decay for biases and layer
    norms (``training.optimizer.is_decayed``). Which variables train is the model's: ``model.freeze_encoder()``
    before compiling leaves the encoder out."""
    accumulation = options.gradient_accumulation_steps
    optimizer = TorchAdamW(
        learning_rate=WhisperLearningRate(options, total_steps),
        weight_decay=options.weight_decay,
        beta_1=options.adam_beta1,
        beta_2=options.adam_beta2,
        epsilon=options.adam_epsilon,
        global_clipnorm=options.max_grad_norm,
        gradient_accumulation_steps=accumulation if accumulation > 1 else None,
        name="adamw",
    )
    not_decayed = [variable for name, variable in model_variables(model).items() if not is_decayed(name)]
    optimizer.exclude_from_weight_decay(var_list=not_decayed)
    return optimizer


# --- Keras' fit, evaluate and saving ---------------------------------------------------------------------------------
def model_inputs(model: Any, data: Any) -> dict[str, Any]:
    """A Keras batch (a dict, or ``(dict, labels)``) as the model's keyword arguments; ``encoder_outputs`` (a
    frozen encoder's cached states) becomes the one-element tuple the model takes."""
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    if not isinstance(x, Mapping):
        raise InputError(
            f"a training batch must be a dict of model inputs ({{'input_features', 'labels'}}), got "
            f"{type(x).__name__}: build the data set from the collator's dicts (to_tf_dataset)"
        )
    inputs = dict(x)
    if y is not None:
        inputs.setdefault("labels", y)
    accepted = set(inspect.signature(model.call).parameters) - {"training"}
    unknown = sorted(set(inputs) - accepted)
    if unknown:
        raise InputError(
            f"batch keys {unknown} are not arguments of {type(model).__name__}.call; expected some of "
            f"input_features, labels, decoder_input_ids, attention_mask, encoder_outputs"
        )
    if inputs.get("encoder_outputs") is not None and tf.is_tensor(inputs["encoder_outputs"]):
        inputs["encoder_outputs"] = (inputs["encoder_outputs"],)
    return inputs


def _batch_loss(model: Any, outputs: Any) -> tf.Tensor:
    loss = getattr(outputs, "loss", None)
    if loss is None:
        raise InputError(
            f"{type(model).__name__} computed no loss: train a model with a head (TFWhisperForConditionalGeneration "
            f"or TFWhisperForAudioClassification) on batches that carry 'labels'"
        )
    return loss


def apply_batch(model: Any, inputs: dict[str, Any]) -> tuple[tf.Tensor, Any]:
    """One forward and backward pass and ``model.optimizer.apply_gradients`` (which accumulates, clips, decays and
    updates); returns the batch's loss and the model's outputs."""
    with tf.GradientTape() as tape:
        outputs = model(**inputs, training=True)
        loss = model.compute_loss(x=inputs, y_pred=outputs, training=True)
        scaled = model.optimizer.scale_loss(loss)
    variables = model.trainable_weights
    model.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
    return loss, outputs


def _update_metrics(model: Any, inputs: dict[str, Any], loss: tf.Tensor, outputs: Any) -> dict[str, Any]:
    """Keras' "customizing fit" pattern: the loss tracker takes the loss, the compiled metrics labels and logits."""
    for metric in model.metrics:
        if metric.name == "loss":
            metric.update_state(loss)
        else:
            metric.update_state(inputs.get("labels"), outputs.logits)
    return model.get_metrics_result()  # type: ignore[no-any-return]


class KerasTrainingMixin:
    """``fit``/``evaluate`` on the model's own loss, and Keras serialization, for every Whisper Keras model.

    The batches are dicts of call arguments with ``labels`` (Keras' ``(x, y)`` pairs put ``y`` in as the labels);
    every subclass is registered with ``keras.saving`` under the "whisper_multi" package, its config the
    ``WhisperConfig``, so ``model.save("x.keras")`` and ``keras.models.load_model`` round-trip.
    """

    config: WhisperConfig

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        # A user's subclass registers itself under its own package: this one keeps the package's names.
        if cls.__module__.startswith(f"{SERIALIZATION_PACKAGE}."):
            keras.saving.register_keras_serializable(SERIALIZATION_PACKAGE)(cls)

    def train_step(self, data: Any) -> dict[str, Any]:
        inputs = model_inputs(self, data)
        loss, outputs = apply_batch(self, inputs)
        return _update_metrics(self, inputs, loss, outputs)

    def test_step(self, data: Any) -> dict[str, Any]:
        inputs = model_inputs(self, data)
        outputs = self(**inputs, training=False)  # type: ignore[operator]
        loss = self.compute_loss(x=inputs, y_pred=outputs, training=False)
        return _update_metrics(self, inputs, loss, outputs)

    def predict_step(self, data: Any) -> Any:
        inputs = model_inputs(self, data)
        inputs.pop("labels", None)
        outputs = self(**inputs, training=False)  # type: ignore[operator]
        logits = getattr(outputs, "logits", None)
        return outputs.last_hidden_state if logits is None else logits

    def compute_loss(
        self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training: bool = True
    ) -> tf.Tensor:
        """The model's own loss (``y_pred`` is its output), plus any ``add_loss`` terms."""
        loss = _batch_loss(self, y_pred)
        extra = self.losses  # type: ignore[attr-defined]
        return loss + tf.add_n([tf.cast(term, loss.dtype) for term in extra]) if extra else loss

    def get_config(self) -> dict[str, Any]:
        layer: Any = self
        return {
            "name": layer.name,
            "trainable": layer.trainable,
            "dtype": keras.dtype_policies.serialize(layer.dtype_policy),
            "config": self.config.to_dict(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        config = dict(config)
        whisper_config = WhisperConfig.from_dict(config.pop("config"))
        return cls(whisper_config, **config)  # type: ignore[call-arg]


def to_tf_dataset(batches: Sequence[Mapping[str, np.ndarray]], keys: Sequence[str] | None = None) -> tf.data.Dataset:
    """The collator's batches as a ``tf.data.Dataset`` for ``fit``/``evaluate``, one element per batch.

    Every batch's labels are padded with -100 to the longest, which leaves each loss unchanged (causal attention:
    later positions do not reach earlier ones), so the data set has one static shape and ``fit`` compiles one step.
    ``decoder_input_ids`` is left out (the model shifts the labels in the graph) unless ``keys`` names it.
    """
    if not batches:
        raise InputError("to_tf_dataset got no batches")
    keys = [key for key in batches[0] if key != "decoder_input_ids"] if keys is None else list(keys)
    longest = max(int(np.shape(batch["labels"])[1]) for batch in batches) if "labels" in keys else 0
    padded = [{key: _padded(key, np.asarray(batch[key]), longest) for key in keys} for batch in batches]
    for index, batch in enumerate(padded):
        for key in keys:
            if batch[key].shape != padded[0][key].shape:
                raise InputError(
                    f"batch {index} has {key} of shape {batch[key].shape}, batch 0 {padded[0][key].shape}: "
                    f"to_tf_dataset needs batches of one size (the collator's, with whole batches only)"
                )
    signature = {key: tf.TensorSpec(value.shape, tf.as_dtype(value.dtype)) for key, value in padded[0].items()}
    dataset = tf.data.Dataset.from_generator(lambda: iter(padded), output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(padded)))  # so Keras knows an epoch's end


def _padded(key: str, array: np.ndarray, length: int) -> np.ndarray:
    if key != "labels" or array.shape[1] == length:
        return array
    return np.pad(array, [(0, 0), (0, length - array.shape[1])], constant_values=IGNORE_INDEX)


# --- the fine-tuning loop's step ------------------------------------------------------------------------------------
class Trainer:
    """The TF backend of ``whisper_multi.training.trainer.Trainer``: ``model.compile`` with ``make_optimizer`` and
    one XLA-compiled Keras step (``apply_batch``) per micro-batch, traced once per batch shape. ``freeze_encoder``
    makes the encoder's variables non-trainable, ``gradient_checkpointing`` recomputes each layer in the backward
    pass, ``bf16`` runs the step under Keras' "mixed_bfloat16" policy (float32 variables).

    Keras' own ``train_on_batch`` is not used: its ``tf.function`` relaxes a second label length to an unknown one,
    which the model's shape checks (and XLA) need static; here each length keeps its own compiled step.
    """

    def __init__(self, model: Any, options: TrainingOptions, total_steps: int):
        self.model = model
        self.options = options
        self.total_steps = total_steps
        if options.freeze_encoder:
            model.freeze_encoder()
        if options.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.optimizer = make_optimizer(model, options, total_steps)
        model.compile(optimizer=self.optimizer, jit_compile=True)
        self.optimizer.build(model.trainable_variables)
        self._warn_about_layerdrop()
        self._micro_step = tf.function(self._apply, jit_compile=True)
        self._encode = tf.function(self._encoder_states, jit_compile=True)
        self._encode_rows = options.batch_size

    def _apply(self, inputs: dict[str, Any]) -> tf.Tensor:
        return apply_batch(self.model, inputs)[0]

    def _encoder_states(self, input_features: tf.Tensor) -> tf.Tensor:
        return self.model.get_encoder()(input_features, training=False).last_hidden_state

    @property
    def _layerdrop(self) -> bool:
        return bool(self.model.config.encoder_layerdrop > 0 or self.model.config.decoder_layerdrop > 0)

    def _warn_about_layerdrop(self) -> None:
        if self._layerdrop:
            warnings.warn(
                "LayerDrop is drawn in Python when the compiled step is traced: the TF Trainer skips the same "
                "layers at every step (drawn from options.seed, so a resumed run skips the same ones)",
                stacklevel=3,
            )

    def train_step(self, batches: list[dict[str, np.ndarray]], step: int) -> float:
        """One optimizer step over the micro-batches; returns the mean of their losses."""
        taken = int(self.optimizer.iterations.numpy())
        if taken != step:
            raise InputError(
                f"train_step was asked for step {step}, but the optimizer has taken {taken} steps: resume with "
                f"load_state from the checkpoint of step {step}, or continue at step {taken}"
            )
        if len(batches) != self.options.gradient_accumulation_steps:
            raise InputError(
                f"step {step} got {len(batches)} micro-batches, expected gradient_accumulation_steps="
                f"{self.options.gradient_accumulation_steps}"
            )
        seed = step_seed(self.options.seed, step)
        # Dropout and SpecAugment draw from the global generator inside the graph (the model's module docstring).
        tf.random.get_global_generator().reset_from_seed(seed)
        if self._layerdrop:
            random.seed(self.options.seed)  # a trace's Python draws (LayerDrop) depend on the run alone
        with _computing_in(self.model, "mixed_bfloat16" if self.options.bf16 else None):
            losses = [float(self._micro_step(self._tensors(batch))) for batch in batches]
        return float(np.mean(losses))

    def _tensors(self, batch: Mapping[str, np.ndarray]) -> dict[str, Any]:
        return model_inputs(self.model, {key: tf.convert_to_tensor(value) for key, value in batch.items()})

    def encode(self, input_features: np.ndarray) -> np.ndarray:
        """The encoder's last hidden state (batch, positions, d_model) float32, without dropout or SpecAugment.

        Run in chunks of ``batch_size`` rows, the last padded, so any number of rows needs one compiled shape (the
        loop encodes whichever rows of a batch are not cached yet)."""
        features = np.asarray(input_features, np.float32)
        size = self._encode_rows
        chunks = []
        for start in range(0, len(features), size):
            chunk = features[start : start + size]
            padding = np.zeros((size - len(chunk), *chunk.shape[1:]), np.float32)
            states = self._encode(tf.convert_to_tensor(np.concatenate([chunk, padding])))
            chunks.append(tf.cast(states, tf.float32).numpy()[: len(chunk)])
        if not chunks:
            config = self.model.config
            return np.zeros((0, config.max_source_positions, config.d_model), np.float32)
        return np.concatenate(chunks)

    def save_state(self, directory: Path) -> None:
        """The optimizer's variables (step count, moments, accumulators) to ``directory/optimizer.npz``, written
        whole or not at all. The random draws need no state: every step reseeds from ``step_seed``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"{index:05d}": variable.numpy() for index, variable in enumerate(self.optimizer.variables)}
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{OPTIMIZER_STATE}.", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, **arrays)
            os.replace(temporary, self._state_file(directory))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def load_state(self, directory: Path) -> None:
        """Read back what ``save_state`` wrote, after the model's weights have been loaded."""
        path = self._state_file(Path(directory))
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist: the checkpoint has no TF optimizer state to resume from")
        with np.load(path) as stored:
            arrays = [stored[key] for key in sorted(stored.files)]
        variables = self.optimizer.variables
        if len(arrays) != len(variables):
            raise CheckpointError(
                f"{path} holds {len(arrays)} optimizer variables, this run's optimizer has {len(variables)}: the "
                f"checkpoint was made with other options (freeze_encoder, gradient_accumulation_steps) or model"
            )
        for index, (array, variable) in enumerate(zip(arrays, variables)):
            if tuple(array.shape) != tuple(variable.shape):
                raise CheckpointError(
                    f"{path}: optimizer variable {index} ({variable.path}) has shape {array.shape} in the file, "
                    f"{tuple(variable.shape)} in this run: the checkpoint belongs to another model"
                )
            variable.assign(array)

    @staticmethod
    def _state_file(directory: Path) -> Path:
        return directory / f"{OPTIMIZER_STATE}.npz"

    def canonical_weights(self) -> dict[str, np.ndarray]:
        """Every parameter as a canonical numpy tensor (``weights.table`` names, PyTorch layout)."""
        return canonical_state_dict(self.model)


@contextlib.contextmanager
def _computing_in(model: Any, policy: str | None) -> Iterator[None]:
    """Every layer of ``model`` under the Keras dtype ``policy`` ("mixed_bfloat16": bfloat16 compute, float32
    variables) while a step is traced or run, its own policies restored after, so the model the loop generates with
    stays as built. A policy is read when a step is traced: each trace sees the training one. None: unchanged."""
    if policy is None:
        yield
        return
    layers = list(model._flatten_layers(include_self=True, recursive=True))
    previous = [layer.dtype_policy for layer in layers]
    try:
        for layer in layers:
            layer.dtype_policy = keras.dtype_policies.get(policy)
        yield
    finally:
        for layer, old_policy in zip(layers, previous):
            layer.dtype_policy = old_policy
