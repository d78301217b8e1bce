"""Fine-tuning in Flax's idiom: a ``TrainState``, an optax chain, one jitted pure step, Orbax checkpoints.

The loop, the options, the schedule and which parameters train are the core's (``whisper_multi.training``); this
module writes them the way JAX users train: ``create_train_state`` holds the parameters and the optax state,
``make_train_step`` compiles one optimizer step (gradient accumulation over the stacked micro-batches: a
``jax.lax.scan``, unrolled on CPU), and ``Trainer`` is the protocol of ``training.trainer`` on top of them.

The optimizer is torch.optim.AdamW's: gradients clipped to a global norm, Adam with epsilon added to the
bias-corrected root, then decoupled weight decay, the learning rate of ``schedule.learning_rate`` at optax's update
count. Parameters ``optimizer.is_trained`` leaves out (the encoder's sinusoids; the encoder with ``freeze_encoder``)
sit in a partition of ``optax.set_to_zero``: no update, no decay, no moments, and no part in the clipping norm, as
PyTorch leaves parameters without gradients out of ``clip_grad_norm_``. Linen paths become canonical names through
the weight layer (``flax.loading.param_path``); a scanned stack (``scan_layers``) is one leaf for all its layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from whisper_multi.errors import BackendError, CheckpointError, InputError
from whisper_multi.flax.loading import param_path
from whisper_multi.modeling.utils import IGNORE_INDEX
from whisper_multi.training import optimizer, schedule
from whisper_multi.training.options import TrainingOptions, step_seed
from whisper_multi.training.trainer import OPTIMIZER_STATE
from whisper_multi.weights.table import canonical_parameters

Batch = Mapping[str, Any]
Params = dict[str, Any]
TrainStep = Callable[[TrainState, Batch, jax.Array], tuple[TrainState, jax.Array]]

TRAINED, FROZEN = "trained", "frozen"  # the optimizer's two partitions of the parameters
# What a batch may hold: the collator's keys, or the encoder's cached output instead of the features.
MODEL_INPUTS = ("input_features", "encoder_outputs", "labels", "decoder_input_ids", "decoder_attention_mask")
# The keys whose second axis is the label time: micro-batches of one step are padded to one length along it.
_TIME_PADDING = {"labels": IGNORE_INDEX, "decoder_input_ids": None, "decoder_attention_mask": 0}


# --- Linen paths to canonical names ---------------------------------------------------------------------------------
def canonical_names(model: Any) -> dict[str, tuple[str, ...]]:
    """Each Linen parameter path of ``model`` ("model/encoder/layers_0/fc1/kernel") -> the canonical names it holds:
    one, or every layer of a scanned stack ("model/encoder/layers/fc1/kernel" with ``scan_layers``)."""
    names: dict[str, list[str]] = {}
    for name in canonical_parameters(model.config, model.head):
        path, _ = param_path(name, model.config, model.head, model.scan_layers)
        names.setdefault(path, []).append(name)
    return {path: tuple(held) for path, held in names.items()}


def _path_string(path: Sequence[Any]) -> str:
    return "/".join(str(getattr(key, "key", key)) for key in path)


def _flags(names: Mapping[str, tuple[str, ...]], flag: Callable[[str], bool], what: str) -> dict[str, bool]:
    """``flag`` of each path's canonical names; the layers of one stacked leaf must agree (they share the leaf)."""
    flags = {}
    for path, held in names.items():
        values = {flag(name) for name in held}
        if len(values) != 1:
            raise InputError(
                f"the layers stacked in {path} differ in {what} ({held[0]} ...): a scanned stack is one parameter; "
                f"build the model with scan_layers=False to treat its layers apart"
            )
        flags[path] = values.pop()
    return flags


def _tree_of(flags: Mapping[str, bool], tree: Any) -> Any:
    """A tree shaped like ``tree`` (optax's ``MaskedNode`` placeholders kept) of each leaf's flag."""

    def leaf(path: Sequence[Any], _: Any) -> bool:
        key = _path_string(path)
        if key not in flags:
            raise CheckpointError(
                f"parameter {key} is not a Whisper parameter of the weight table: train a model built by "
                f"whisper_multi (from_pretrained, from_state_dict or the constructor)"
            )
        return flags[key]

    return jax.tree_util.tree_map_with_path(leaf, tree)


def parameter_labels(model: Any, options: TrainingOptions) -> Params:
    """``TRAINED`` or ``FROZEN`` for each leaf of ``model.params`` (``optimizer.is_trained``), for
    ``optax.multi_transform``."""
    trained = _flags(canonical_names(model), lambda name: optimizer.is_trained(name, options), "being trained")
    return jax.tree_util.tree_map(lambda flag: TRAINED if flag else FROZEN, _tree_of(trained, model.params))


def decay_mask(model: Any) -> Callable[[Any], Any]:
    """optax's weight-decay mask as a function of the (partitioned) parameter tree: ``optimizer.is_decayed``."""
    decayed = _flags(canonical_names(model), optimizer.is_decayed, "weight decay")
    return lambda params: _tree_of(decayed, params)


# --- the optimizer and the state ------------------------------------------------------------------------------------
def learning_rate_schedule(options: TrainingOptions, total_steps: int) -> optax.Schedule:
    """The core's schedule at optax's update count (0 at the first update)."""
    return lambda count: schedule.learning_rate(count, options, total_steps, xp=jnp)


def make_optimizer(model: Any, options: TrainingOptions, total_steps: int) -> optax.GradientTransformation:
    """torch.optim.AdamW with clipping for ``model``'s parameters: clip the trained parameters' gradients to
    ``max_grad_norm`` (when set), AdamW on them with decay where ``optimizer.is_decayed``; zero updates elsewhere."""
    adamw = optax.adamw(
        learning_rate=learning_rate_schedule(options, total_steps),
        b1=options.adam_beta1,
        b2=options.adam_beta2,
        eps=options.adam_epsilon,
        weight_decay=options.weight_decay,
        mask=decay_mask(model),
    )
    trained = (
        adamw if options.max_grad_norm is None else optax.chain(optax.clip_by_global_norm(options.max_grad_norm), adamw)
    )
    return optax.multi_transform({TRAINED: trained, FROZEN: optax.set_to_zero()}, parameter_labels(model, options))


def training_module(model: Any, options: TrainingOptions) -> Any:
    """``model.module`` as the train step runs it: checkpointed (``nn.remat``) with ``gradient_checkpointing``,
    computing in bfloat16 with ``bf16`` (the parameters stay in their own dtype, float32 as loaded)."""
    module = model.module
    changes: dict[str, Any] = {}
    if options.gradient_checkpointing and not module.gradient_checkpointing:
        changes["gradient_checkpointing"] = True
    if options.bf16 and module.dtype != jnp.bfloat16:
        changes["dtype"] = jnp.bfloat16
    return module.clone(**changes) if changes else module


def create_train_state(model: Any, options: TrainingOptions, total_steps: int) -> TrainState:
    """A ``TrainState`` of ``model.params`` (the same arrays, not copies), the optimizer of ``make_optimizer`` and
    the apply function of ``training_module``."""
    if model.head != "conditional_generation":
        raise InputError(
            f"fine-tuning trains a speech-to-text model, got {type(model).__name__} ({model.head}): use "
            f"FlaxWhisperForConditionalGeneration"
        )
    state = TrainState.create(
        apply_fn=training_module(model, options).apply,
        params=model.params,
        tx=make_optimizer(model, options, total_steps),
    )
    return state.replace(step=jnp.zeros((), jnp.int32))  # an array from the start: the step compiles once


# --- the step -------------------------------------------------------------------------------------------------------
def _model_inputs(batch: Batch) -> dict[str, Any]:
    inputs = {name: value for name, value in batch.items() if name != "encoder_outputs"}
    if "encoder_outputs" in batch:
        inputs["encoder_outputs"] = (batch["encoder_outputs"],)  # (last hidden state,), as the module takes it
    return inputs


def _unrolls_accumulation() -> bool:
    """Whether the micro-batches are accumulated in an unrolled Python loop rather than a ``lax.scan``: on CPU, where
    XLA runs a loop body several times slower than the same operations outside a loop, even a loop of one
    micro-batch (benchmarks/results.md, training case). Elsewhere the scan stays: the compiled step holds one
    micro-batch however many are accumulated."""
    return jax.default_backend() == "cpu"


def _micro_batch(batches: Batch, index: int) -> Batch:
    return {name: value[index] for name, value in batches.items()}


def make_train_step(model: Any, options: TrainingOptions) -> TrainStep:
    """``train_step(state, batches, step_rng) -> (state, loss)``, jit-compiled with the state donated.

    ``batches`` holds the micro-batches stacked on a leading axis (``stack_batches``); their gradients are averaged
    (a ``jax.lax.scan``; unrolled on CPU, ``_unrolls_accumulation``), then one optimizer update. Dropout, LayerDrop and
    SpecAugment of micro-batch ``i`` draw from ``fold_in(step_rng, i)``. ``loss`` is the mean of the micro-batches'
    losses, each the model's own (labels shifted into decoder inputs in the graph, -100 ignored).
    """
    apply_fn = training_module(model, options).apply  # the state's own apply_fn (create_train_state)

    def loss_fn(params: Params, batch: Batch, rng: jax.Array) -> jax.Array:
        outputs = apply_fn({"params": params}, **_model_inputs(batch), deterministic=False, rngs={"dropout": rng})
        return outputs.loss

    value_and_grad = jax.value_and_grad(loss_fn)

    def train_step(state: TrainState, batches: Batch, step_rng: jax.Array) -> tuple[TrainState, jax.Array]:
        count = jax.tree_util.tree_leaves(batches)[0].shape[0]

        def accumulate(carry: tuple[jax.Array, Params], index_and_batch: tuple[jax.Array, Batch]) -> tuple[Any, None]:
            index, batch = index_and_batch
            loss, grads = value_and_grad(state.params, batch, jax.random.fold_in(step_rng, index))
            return jax.tree_util.tree_map(jnp.add, carry, (loss, grads)), None

        carry = (jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, state.params))
        if _unrolls_accumulation():
            for index in range(count):
                carry, _ = accumulate(carry, (index, _micro_batch(batches, index)))
        else:
            carry, _ = jax.lax.scan(accumulate, carry, (jnp.arange(count), batches))
        loss_sum, grad_sum = carry
        grads = jax.tree_util.tree_map(lambda grad: grad / count, grad_sum)
        return state.apply_gradients(grads=grads), loss_sum / count

    return jax.jit(train_step, donate_argnums=0)


def stack_batches(batches: Sequence[Batch], pad_token_id: int | None) -> dict[str, np.ndarray]:
    """The micro-batches of one step as one dict of arrays with a leading micro-batch axis. Labels (and decoder
    inputs) of different lengths are padded to the longest with -100 (pad): the causal decoder and the loss ignore
    positions after a row's end, so the losses and gradients are those of the unpadded batches."""
    if not batches:
        raise InputError("train_step got no micro-batches: pass a list of at least one batch dict")
    keys = set(batches[0])
    unknown = sorted(keys - set(MODEL_INPUTS))
    if unknown or any(set(batch) != keys for batch in batches):
        raise InputError(
            f"every micro-batch must hold the same keys among {MODEL_INPUTS}; got {[sorted(b) for b in batches]}"
        )
    stacked = {}
    for key in sorted(keys):
        arrays = [np.asarray(batch[key]) for batch in batches]
        if key in _TIME_PADDING:
            arrays = _padded_in_time(key, arrays, pad_token_id)
        shapes = {array.shape for array in arrays}
        if len(shapes) != 1:
            raise InputError(f"the micro-batches' {key} differ in shape {sorted(shapes)}: give every one the same size")
        stacked[key] = np.stack(arrays)
    return stacked


def _padded_in_time(key: str, arrays: list[np.ndarray], pad_token_id: int | None) -> list[np.ndarray]:
    longest = max(array.shape[1] for array in arrays)
    if all(array.shape[1] == longest for array in arrays):
        return arrays
    fill = _TIME_PADDING[key]
    if fill is None:
        if pad_token_id is None:
            raise InputError(
                f"the micro-batches' {key} differ in length and config.pad_token_id is None: set it, or give every "
                f"micro-batch of a step the same label length"
            )
        fill = pad_token_id
    return [np.pad(array, ((0, 0), (0, longest - array.shape[1])), constant_values=fill) for array in arrays]


# --- Orbax checkpoints ----------------------------------------------------------------------------------------------
def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:
        raise BackendError(
            f"saving a Flax training state needs orbax-checkpoint ({error}): run pip install orbax-checkpoint"
        ) from error
    return ocp


def save_checkpoint(directory: str | Path, state: Any) -> None:
    """Write ``state`` (a ``TrainState`` or any pytree of arrays) as an Orbax checkpoint in ``directory``, which must
    not exist yet; Orbax writes a temporary directory and renames it when complete. Returns once it is on disk."""
    path = Path(directory).absolute()
    if path.exists():
        raise CheckpointError(f"{path} already exists: save a training state into a new directory")
    with _orbax().StandardCheckpointer() as checkpointer:
        checkpointer.save(path, state)
        checkpointer.wait_until_finished()


def restore_checkpoint(directory: str | Path, state_template: Any) -> Any:
    """Read the Orbax checkpoint in ``directory`` into the structure, shapes and dtypes of ``state_template``."""
    path = Path(directory).absolute()
    if not path.is_dir():
        raise CheckpointError(f"no Flax training state at {path}: the directory save_checkpoint wrote is needed")
    abstract = jax.eval_shape(lambda tree: tree, state_template)  # shapes and dtypes: nothing is allocated twice
    with _orbax().StandardCheckpointer() as checkpointer:
        try:
            return checkpointer.restore(path, abstract)
        except (ValueError, KeyError) as error:
            raise CheckpointError(
                f"the training state at {path} does not fit this model and options ({error}): resume with the "
                f"model and TrainingOptions that wrote it"
            ) from error


# --- the protocol ---------------------------------------------------------------------------------------------------
class Trainer:
    """``training.trainer.Trainer`` for ``FlaxWhisperForConditionalGeneration``: a ``TrainState`` stepped by
    ``make_train_step``. ``model.params`` is the source of the weights (the loop may reload them) and holds the new
    ones after every step. The step donates the parameter arrays it is given: hold numpy copies
    (``canonical_weights``) of weights you want to keep, not the arrays of ``model.params``."""

    def __init__(self, model: Any, options: TrainingOptions, total_steps: int):
        self.model = model
        self.options = options
        self.total_steps = total_steps
        self.state = _committed(create_train_state(model, options, total_steps))
        self.model.params = self.state.params
        self.steps_taken = 0  # the optimizer's update count, kept on the host so a step need not read the device
        self._train_step = make_train_step(model, options)
        module = training_module(model, options)

        def encode(params: Params, input_features: jax.Array) -> jax.Array:
            return module.apply({"params": params}, input_features, method=module.encode).last_hidden_state

        self._encode = jax.jit(encode)

    def train_step(self, batches: list[dict[str, np.ndarray]], step: int) -> float:
        """One optimizer step over the micro-batches, random draws from ``step_seed(seed, step)``; the mean loss."""
        if step != self.steps_taken:
            raise InputError(
                f"train_step got step {step}, but the optimizer has taken {self.steps_taken} steps (its learning rate "
                f"follows its own count): resume with load_state before continuing a run at a later step"
            )
        stacked = stack_batches(batches, self.model.config.pad_token_id)
        params = self.model.params
        if params is not self.state.params:  # weights loaded into the model since the last step
            params = _committed(params)
        step_rng = jax.random.PRNGKey(step_seed(self.options.seed, step))
        self.state, loss = self._train_step(self.state.replace(params=params), stacked, step_rng)
        self.model.params = self.state.params
        self.steps_taken += 1
        return float(loss)

    def encode(self, input_features: np.ndarray) -> np.ndarray:
        """The encoder's last hidden state (batch, positions, d_model) float32, deterministic."""
        return np.asarray(self._encode(self.model.params, jnp.asarray(input_features)), dtype=np.float32)

    def save_state(self, directory: Path) -> None:
        """The optimizer's moments and update count, an Orbax checkpoint in ``directory/optimizer``."""
        save_checkpoint(Path(directory) / OPTIMIZER_STATE, {"step": self.state.step, "opt_state": self.state.opt_state})

    def load_state(self, directory: Path) -> None:
        """Read back what ``save_state`` wrote; the parameters are ``model.params`` (the loop reloads them first)."""
        template = {
            "step": jax.ShapeDtypeStruct((), jnp.int32),
            # Shapes only: the moments are read from the checkpoint, never initialised here.
            "opt_state": jax.eval_shape(self.state.tx.init, self.model.params),
        }
        restored = restore_checkpoint(Path(directory) / OPTIMIZER_STATE, template)
        # The same optimizer and apply function: the compiled step is reused, not compiled again.
        state = self.state.replace(step=restored["step"], params=self.model.params, opt_state=restored["opt_state"])
        self.state = _committed(state)
        self.model.params = self.state.params
        self.steps_taken = int(restored["step"])

    def canonical_weights(self) -> dict[str, np.ndarray]:
        """Every parameter as a canonical numpy tensor (``weights.table`` names, PyTorch layout)."""
        return dict(self.model.state_dict())


def _committed(tree: Any) -> Any:
    """Every array committed to the devices it is on (no copy). Arrays Orbax restores are committed, and a compiled
    function is specialised on it; committing fresh ones too lets every step, resumed or not, share one compilation."""

    def commit(leaf: Any) -> jax.Array:
        array = jnp.asarray(leaf)  # a jax.Array as it is; numpy onto the default device
        return jax.device_put(array, array.sharding)

    return jax.tree_util.tree_map(commit, tree)
