"""The three model files keep one skeleton: same classes in the same order, same attributes, same forward arguments,
same methods and same module-level helpers.

The files are parsed with ``ast`` (nothing is imported). For each class the compared *attributes* are the names
assigned as ``self.<name> = ...`` in its methods, its Linen dataclass fields (class-level annotations) and those of
its base classes defined in the same file. The *forward arguments* are the parameter names of ``forward`` (PyTorch),
``call`` (Keras) and ``__call__`` (Linen). The *methods* are those a class defines itself (a Flax model: its Linen
module and its wrapper together), with the constructor (``__init__`` / ``setup``) and the forward pass compared
under one name each. The *helpers* are the module-level functions; they sit outside the run of mirrored classes.
Everything that exists in only some frameworks is listed below, each with its reason; anything else that differs is
drift and fails the suite, naming the class and the names.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent.parent / "src" / "whisper_multi"
MODEL_FILES = {
    "pt": SOURCE / "pt" / "modeling_whisper.py",
    "tf": SOURCE / "tf" / "modeling_tf_whisper.py",
    "flax": SOURCE / "flax" / "modeling_flax_whisper.py",
}
# The mixins the models inherit their loading and generation from: the same methods and bases in each backend.
MIXINS = {
    "PreTrainedModelMixin": {framework: SOURCE / framework / "loading.py" for framework in ("pt", "tf", "flax")},
    "WhisperGenerationMixin": {framework: SOURCE / framework / "generation.py" for framework in ("pt", "tf", "flax")},
}
CLASS_PREFIX = {"pt": "", "tf": "TF", "flax": "Flax"}
FORWARD = {"pt": "forward", "tf": "call", "flax": "__call__"}
CONSTRUCTOR = {"pt": "__init__", "tf": "__init__", "flax": "setup"}
FRAMEWORKS = ("pt", "tf", "flax")

# --- the exceptions, each with its reason ---------------------------------------------------------------------------
# TF: private helper layers PyTorch has built in (a positional table layer, an embedding with padding_idx); they come
# before the mirrored classes.
FRAMEWORK_ONLY_CLASSES_FIRST = {"tf": ("_PositionalEmbedding", "_TokenEmbedding"), "flax": ()}
# Flax: the scan helpers (one layer step of ``nn.scan``) subclass the layers and are fenced at the end of the file.
FRAMEWORK_ONLY_CLASSES_LAST = {"tf": (), "flax": ("_EncoderLayerStep", "_DecoderLayerStep")}
# Flax: a top-level model is a Linen module named ``<Name>Module`` followed at once by its wrapper ``Flax<Name>``
# (config + params + module, as in Transformers); the module mirrors the PyTorch class.
FLAX_MODULE_NAMES = {
    "WhisperModel": "FlaxWhisperModule",
    "WhisperForConditionalGeneration": "FlaxWhisperForConditionalGenerationModule",
    "WhisperForAudioClassification": "FlaxWhisperForAudioClassificationModule",
}
# PyTorch attributes that are methods in TF / Flax: the output projection is tied to the token embedding.
ATTRIBUTES_AS_METHODS = {"proj_out"}
# Attributes only a framework has. Private names (a leading underscore) are implementation details everywhere.
FRAMEWORK_ONLY_ATTRIBUTES = {
    "pt": set(),
    # Keras builds sublayers from input sizes in build() (ffn_dim, num_layers) and freezes with `trainable`.
    "tf": {"ffn_dim", "num_layers", "trainable"},
    # Linen modules keep their constructor arguments as dataclass fields (config, attn_implementation,
    # gradient_checkpointing, the dtypes, scan_layers, init_std); the wrapper holds its module and dummy input.
    "flax": {
        "config", "attn_implementation", "gradient_checkpointing", "dtype", "param_dtype", "scan_layers", "init_std",
        "module", "module_class", "input_shape", "key",
    },
}  # fmt: skip
# Arguments only a framework's forward takes: Keras' `training`, Linen's `deterministic` (PyTorch: self.training).
FRAMEWORK_ONLY_ARGUMENTS = {"pt": set(), "tf": {"training"}, "flax": {"deterministic"}}

# Methods, by PyTorch class name ("*": every class), that only some frameworks define -> those frameworks.
METHODS_NOT_IN_EVERY_FILE: dict[tuple[str, str], tuple[str, ...]] = {
    # Keras creates a layer's variables in build(), from input sizes; PyTorch and Linen create them at construction.
    ("*", "build"): ("tf",),
    # Keras reserves Model.layers for a model's children: the property gives the encoder and decoder their blocks.
    ("WhisperPreTrainedModel", "layers"): ("tf",),
    # The output projection is tied to the token embedding: a module in PyTorch, a method reading the table in Keras
    # and Linen (see ATTRIBUTES_AS_METHODS), so only PyTorch can replace it.
    ("WhisperForConditionalGeneration", "proj_out"): ("tf", "flax"),
    ("WhisperForConditionalGeneration", "set_output_embeddings"): ("pt",),
    # torch.nn.Module has no dtype or device of its own; Keras and the Flax wrapper keep theirs as attributes.
    ("WhisperPreTrainedModel", "dtype"): ("pt",),
    ("WhisperPreTrainedModel", "device"): ("pt",),
    # Linen modules hold no parameters and no state: the embeddings, tying, freezing (an optax mask), weight
    # initialisation (``init_weights`` of the wrapper) and checkpointing (a module clone) act on the params tree, so
    # the PyTorch and Keras methods that change a model in place have no Flax module counterpart.
    ("WhisperPreTrainedModel", "attn_implementation"): ("pt", "tf"),
    ("WhisperPreTrainedModel", "set_attn_implementation"): ("pt", "tf"),
    ("WhisperPreTrainedModel", "_init_weights"): ("pt", "tf"),
    ("WhisperPreTrainedModel", "post_init"): ("pt", "tf"),
    ("WhisperPreTrainedModel", "tie_weights"): ("pt", "tf"),
    ("WhisperPreTrainedModel", "gradient_checkpointing_enable"): ("pt", "tf"),
    ("WhisperPreTrainedModel", "gradient_checkpointing_disable"): ("pt", "tf"),
    ("WhisperPreTrainedModel", "is_gradient_checkpointing"): ("pt", "tf"),
    ("WhisperPreTrainedModel", "_run_layer"): ("pt", "tf"),
    ("WhisperPreTrainedModel", "_layer_dropped"): ("pt", "tf"),  # Flax: the helper _layer_dropped(module, ...)
    ("WhisperEncoder", "_freeze_parameters"): ("pt", "tf"),
    ("WhisperDecoder", "get_input_embeddings"): ("pt", "tf"),
    ("WhisperDecoder", "set_input_embeddings"): ("pt", "tf"),
    ("WhisperModel", "get_input_embeddings"): ("pt", "tf"),
    ("WhisperModel", "set_input_embeddings"): ("pt", "tf"),
    ("WhisperModel", "freeze_encoder"): ("pt", "tf"),
    ("WhisperForConditionalGeneration", "tie_weights"): ("pt", "tf"),
    ("WhisperForConditionalGeneration", "get_input_embeddings"): ("pt", "tf"),
    ("WhisperForConditionalGeneration", "get_output_embeddings"): ("pt", "tf"),
    ("WhisperForConditionalGeneration", "freeze_encoder"): ("pt", "tf"),
    ("WhisperForAudioClassification", "freeze_encoder"): ("pt", "tf"),
    # The Flax wrapper (config + params + module, as in Transformers): its params, their initialisation and shapes,
    # gradient checkpointing by cloning the module, and one apply for every call.
    ("WhisperPreTrainedModel", "params"): ("flax",),
    ("WhisperPreTrainedModel", "_dummy_inputs"): ("flax",),
    ("WhisperPreTrainedModel", "init_weights"): ("flax",),
    ("WhisperPreTrainedModel", "params_shapes"): ("flax",),
    ("WhisperPreTrainedModel", "enable_gradient_checkpointing"): ("flax",),
    ("WhisperPreTrainedModel", "disable_gradient_checkpointing"): ("flax",),
    ("WhisperPreTrainedModel", "_apply"): ("flax",),
    ("WhisperPreTrainedModel", "forward"): ("flax",),  # the wrapper's __call__ applies its module
    # Flax applies one method of a module at a time: the encoder or decoder alone, and their jitted pure forms.
    ("WhisperModel", "encode"): ("flax",),
    ("WhisperModel", "decode"): ("flax",),
    ("WhisperForConditionalGeneration", "encode"): ("flax",),
    ("WhisperForConditionalGeneration", "decode"): ("flax",),
    ("WhisperForConditionalGeneration", "jit_encode"): ("flax",),
    ("WhisperForConditionalGeneration", "jit_decode_step"): ("flax",),
    # torch.nn.Module has state_dict / load_state_dict itself and Keras loads variable by variable; the Flax wrapper
    # converts between canonical tensors and its params tree.
    ("PreTrainedModelMixin", "from_state_dict"): ("flax",),
    ("PreTrainedModelMixin", "_from_weights"): ("flax",),
    ("PreTrainedModelMixin", "load_state_dict"): ("flax",),
    ("PreTrainedModelMixin", "state_dict"): ("flax",),
    # PyTorch decodes under torch.no_grad(); TensorFlow and JAX record no gradients unless asked.
    ("WhisperGenerationMixin", "_inference"): ("pt",),
}

# Module-level helpers that only some model files define -> those files.
HELPERS_NOT_IN_EVERY_FILE: dict[str, tuple[str, ...]] = {
    # The exact GELU: tf.nn.gelu's float64 values are not exact (Keras: the erfc form); jax.nn.gelu defaults to tanh.
    "_gelu": ("tf",),
    "_erf_gelu": ("flax",),
    # What PyTorch has built in (nn.Linear, nn.LayerNorm, F.dropout, Conv1d padding, index_copy, nn.init.normal_).
    "_linear": ("tf", "flax"),
    "_layer_norm": ("tf", "flax"),
    "_dropout": ("tf", "flax"),
    "_pad_time": ("tf",),
    "_index_copy": ("tf",),
    "_normal_like": ("tf",),
    "_normal": ("flax",),
    "_token_embedding_init": ("flax",),
    "_sinusoid_init": ("flax",),
    "_framework_kwargs": ("flax",),
    # Keras: building layers from input sizes, dynamic shapes in a traced graph, recompute_grad in graphs.
    "_build": ("tf",),
    "_shape": ("tf",),
    "_recompute": ("tf",),
    # Flax: pytrees, LayerDrop as a traced choice, the wrapper's arguments, scanned layer stacks.
    "_register_output_pytrees": ("flax",),
    "_layer_dropped": ("flax",),
    "_unless_dropped": ("flax",),
    "_skipped_decoder_layer": ("flax",),
    "_module_kwargs": ("flax",),
    "_as_jax": ("flax",),
    "_merge": ("flax",),
    "_last_hidden_state": ("flax",),
    "_decoder_kwargs": ("flax",),
    "_spec_augment_masks": ("flax",),
    "_layer_stack": ("flax",),
    "_unstack": ("flax",),
    "_stack_cache": ("flax",),
    "_unstack_cache": ("flax",),
    "_run_scanned_encoder": ("flax",),
    "_run_scanned_decoder": ("flax",),
}


@dataclass
class ClassShape:
    name: str
    bases: list[str]
    attributes: set[str] = field(default_factory=set)
    methods: set[str] = field(default_factory=set)
    own_methods: set[str] = field(default_factory=set)  # defined in the class body, under the shared names
    forward_arguments: list[str] | None = None
    line: int = 0


def _self_attributes(node: ast.ClassDef) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target] if isinstance(sub, ast.AnnAssign) else []
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name) and leaf.value.id == "self":
                    found.add(leaf.attr)
    return found


def _fields(node: ast.ClassDef) -> set[str]:
    return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}


def read_classes(path: Path, forward: str) -> list[ClassShape]:
    """The top-level classes of ``path`` in file order, attributes including those of same-file base classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    classes: dict[str, ClassShape] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        shape = ClassShape(node.name, [ast.unparse(base) for base in node.bases], line=node.lineno)
        shape.attributes = _self_attributes(node) | _fields(node)
        shape.methods = {s.name for s in node.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
        shared_names = {forward: "forward", "setup": "__init__"}
        shape.own_methods = {shared_names.get(name, name) for name in shape.methods}
        for method in node.body:
            if isinstance(method, ast.FunctionDef) and method.name == forward:
                arguments = method.args.posonlyargs + method.args.args + method.args.kwonlyargs
                shape.forward_arguments = [a.arg for a in arguments if a.arg != "self"]
        for base in shape.bases:
            if base in classes:
                shape.attributes |= classes[base].attributes
                shape.methods |= classes[base].methods
        classes[node.name] = shape
    return list(classes.values())


def _counterparts(framework: str, classes: list[ClassShape], problems: list[str]) -> list[ClassShape]:
    """The classes of a TF or Flax file that mirror PyTorch classes, in file order, with the framework-only classes
    checked for their place and removed."""
    names = [shape.name for shape in classes]
    first, last = FRAMEWORK_ONLY_CLASSES_FIRST[framework], FRAMEWORK_ONLY_CLASSES_LAST[framework]
    if first and names[: len(first)] != list(first):
        problems.append(
            f"{framework}: the helper classes {list(first)} must open the file, found {names[: len(first)]}"
        )
    if last and names[-len(last) :] != list(last):
        problems.append(
            f"{framework}: the helper classes {list(last)} must close the file, found {names[-len(last) :]}"
        )
    mirrored = [shape for shape in classes if shape.name not in (*first, *last)]
    if framework != "flax":
        return mirrored
    modules = set(FLAX_MODULE_NAMES.values())
    kept = []
    for index, shape in enumerate(mirrored):
        wrapper = "Flax" + next((pt for pt, module in FLAX_MODULE_NAMES.items() if module == shape.name), "")
        if shape.name in modules:
            following = mirrored[index + 1].name if index + 1 < len(mirrored) else None
            if following != wrapper:
                problems.append(f"flax: {shape.name} must be followed by its wrapper {wrapper}, found {following}")
        if shape.name in {"Flax" + pt for pt in FLAX_MODULE_NAMES}:
            if "FlaxWhisperPreTrainedModel" not in shape.bases:
                problems.append(f"flax: wrapper {shape.name} must subclass FlaxWhisperPreTrainedModel: {shape.bases}")
            if kept and kept[-1].name in modules:
                kept[-1].own_methods |= shape.own_methods  # the module and its wrapper are one PyTorch class
            continue
        kept.append(shape)
    return kept


def _mirrored_name(framework: str, pt_name: str) -> str:
    if framework == "flax" and pt_name in FLAX_MODULE_NAMES:
        return FLAX_MODULE_NAMES[pt_name]
    return CLASS_PREFIX[framework] + pt_name


def _public(names: set[str]) -> set[str]:
    return {name for name in names if not name.startswith("_")}


def _compare_class(framework: str, reference: ClassShape, shape: ClassShape, problems: list[str]) -> None:
    where = f"{framework}: {shape.name} (PyTorch {reference.name})"
    expected = _public(reference.attributes)
    found = _public(shape.attributes)
    as_methods = {name for name in expected - found if name in ATTRIBUTES_AS_METHODS and name in shape.methods}
    missing = sorted(expected - found - as_methods)
    extra = sorted(found - expected - FRAMEWORK_ONLY_ATTRIBUTES[framework])
    if missing:
        problems.append(f"{where}: attributes missing: {', '.join(missing)}")
    if extra:
        problems.append(f"{where}: attributes PyTorch does not have: {', '.join(extra)}")
    if reference.forward_arguments is None:
        return
    if shape.forward_arguments is None:
        problems.append(f"{where}: no {FORWARD[framework]} method for PyTorch's forward")
        return
    skipped = FRAMEWORK_ONLY_ARGUMENTS[framework]
    arguments = [name for name in shape.forward_arguments if name not in skipped]
    if arguments != reference.forward_arguments:
        missing_args = [a for a in reference.forward_arguments if a not in arguments]
        extra_args = [a for a in arguments if a not in reference.forward_arguments]
        detail = f"missing {missing_args}, extra {extra_args}" if missing_args or extra_args else "in another order"
        problems.append(f"{where}: {FORWARD[framework]} arguments differ from forward: {detail}")


def _unlisted(present: tuple[str, ...], listed: tuple[str, ...] | None) -> str | None:
    """Why a name defined in the files ``present`` is drift, or None when it is in every file or listed so."""
    if present == FRAMEWORKS or present == listed:
        return None
    reason = f"defined in {', '.join(present)} only"
    return reason + (f", but listed for {', '.join(listed)}" if listed else ", with no twin and not listed")


def _compare_methods(pt_name: str, shapes: dict[str, ClassShape | None], problems: list[str]) -> None:
    """A PyTorch class and its mirrors define the same methods, but for those listed in METHODS_NOT_IN_EVERY_FILE."""
    found = {framework: shape for framework, shape in shapes.items() if shape is not None}
    if len(found) < len(FRAMEWORKS):
        return  # a missing class is reported where it is looked for
    for method in sorted(set().union(*(shape.own_methods for shape in found.values()))):
        present = tuple(framework for framework in FRAMEWORKS if method in found[framework].own_methods)
        listed = METHODS_NOT_IN_EVERY_FILE.get((pt_name, method), METHODS_NOT_IN_EVERY_FILE.get(("*", method)))
        reason = _unlisted(present, listed)
        if reason:
            names = ", ".join(found[framework].name for framework in present)
            problems.append(f"{pt_name}: method {method} is {reason} ({names})")


def _mixin_shapes(mixin_files: dict[str, dict[str, Path]], problems: list[str]) -> dict[str, dict[str, Any]]:
    """Each shared mixin's class in each backend, by PyTorch name; their bases must be the same."""
    found: dict[str, dict[str, Any]] = {}
    for pt_name, paths in mixin_files.items():
        classes = {fw: read_classes(path, FORWARD[fw]) for fw, path in paths.items()}
        found[pt_name] = {
            fw: next((shape for shape in shapes if shape.name == CLASS_PREFIX[fw] + pt_name), None)
            for fw, shapes in classes.items()
        }
        for fw, shape in found[pt_name].items():
            if shape is None:
                problems.append(f"{fw}: no class {CLASS_PREFIX[fw] + pt_name} in {paths[fw].name}")
            elif found[pt_name]["pt"] is not None and shape.bases != found[pt_name]["pt"].bases:
                problems.append(f"{fw}: {shape.name} has bases {shape.bases}, PyTorch's {found[pt_name]['pt'].bases}")
    return found


def read_helpers(path: Path) -> dict[str, int]:
    """The module-level functions of ``path`` and their lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.name: node.lineno for node in tree.body if isinstance(node, ast.FunctionDef)}


def _compare_helpers(files: dict[str, Path], classes: dict[str, list[ClassShape]], problems: list[str]) -> None:
    """Every helper has a twin in the other model files or is listed in HELPERS_NOT_IN_EVERY_FILE, and none sits
    between two mirrored classes (framework-only code is fenced at the edges of a file)."""
    helpers = {framework: read_helpers(files[framework]) for framework in FRAMEWORKS}
    for name in sorted(set().union(*helpers.values())):
        present = tuple(framework for framework in FRAMEWORKS if name in helpers[framework])
        reason = _unlisted(present, HELPERS_NOT_IN_EVERY_FILE.get(name))
        if reason:
            problems.append(f"helper {name} is {reason}")
    for framework in FRAMEWORKS:
        fenced = (*FRAMEWORK_ONLY_CLASSES_FIRST.get(framework, ()), *FRAMEWORK_ONLY_CLASSES_LAST.get(framework, ()))
        lines = [shape.line for shape in classes[framework] if shape.name not in fenced]
        for name, line in helpers[framework].items():
            if lines and min(lines) < line < max(lines):
                problems.append(
                    f"{framework}: helper {name} (line {line}) sits between mirrored classes; move it above the "
                    f"first or below the last"
                )


def check_structure(
    files: dict[str, Path] | None = None, mixin_files: dict[str, dict[str, Path]] | None = None
) -> list[str]:
    """Every difference between the skeletons of the three model files (and of the loading and generation mixins
    the models inherit), as readable lines (empty: identical)."""
    files = files or MODEL_FILES
    classes = {framework: read_classes(files[framework], FORWARD[framework]) for framework in FRAMEWORKS}
    reference = classes["pt"]
    problems: list[str] = []
    by_framework = {"pt": {shape.name: shape for shape in reference}}
    for framework in ("tf", "flax"):
        mirrored = _counterparts(framework, classes[framework], problems)
        expected_order = [_mirrored_name(framework, shape.name) for shape in reference]
        found_order = [shape.name for shape in mirrored]
        if found_order != expected_order:
            problems.append(f"{framework}: classes {found_order}, expected in this order: {expected_order}")
        by_framework[framework] = {shape.name: shape for shape in mirrored}
        for pt_shape in reference:
            shape = by_framework[framework].get(_mirrored_name(framework, pt_shape.name))
            if shape is not None:
                _compare_class(framework, pt_shape, shape, problems)
    for pt_name in by_framework["pt"]:
        shapes = {fw: by_framework[fw].get(_mirrored_name(fw, pt_name)) for fw in FRAMEWORKS}
        _compare_methods(pt_name, shapes, problems)
    for pt_name, shapes in _mixin_shapes(mixin_files or MIXINS, problems).items():
        _compare_methods(pt_name, shapes, problems)
    _compare_helpers(files, classes, problems)
    return problems


if __name__ == "__main__":
    import sys

    found = check_structure()
    print("\n".join(found) if found else "the three model files share one skeleton")
    sys.exit(1 if found else 0)
