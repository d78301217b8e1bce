"""The three model files keep one skeleton: same classes in the same order, same attributes, same forward arguments.

The files are parsed with ``ast`` (nothing is imported). For each class the compared *attributes* are the names
assigned as ``self.<name> = ...`` in its methods, its Linen dataclass fields (class-level annotations) and those of
its base classes defined in the same file. The *forward arguments* are the parameter names of ``forward`` (PyTorch),
``call`` (Keras) and ``__call__`` (Linen). Everything a framework needs that PyTorch does not is listed below, each
with its reason; anything else that differs is drift and fails the suite, naming the class and the names.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "src" / "whisper_multi"
MODEL_FILES = {
    "pt": SOURCE / "pt" / "modeling_whisper.py",
    "tf": SOURCE / "tf" / "modeling_tf_whisper.py",
    "flax": SOURCE / "flax" / "modeling_flax_whisper.py",
}
CLASS_PREFIX = {"pt": "", "tf": "TF", "flax": "Flax"}
FORWARD = {"pt": "forward", "tf": "call", "flax": "__call__"}

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


@dataclass
class ClassShape:
    name: str
    bases: list[str]
    attributes: set[str] = field(default_factory=set)
    methods: set[str] = field(default_factory=set)
    forward_arguments: list[str] | None = None


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
        shape = ClassShape(node.name, [ast.unparse(base) for base in node.bases])
        shape.attributes = _self_attributes(node) | _fields(node)
        shape.methods = {s.name for s in node.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
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


def check_structure(files: dict[str, Path] | None = None) -> list[str]:
    """Every difference between the skeletons of the three model files, as readable lines (empty: identical)."""
    files = files or MODEL_FILES
    reference = read_classes(files["pt"], FORWARD["pt"])
    problems: list[str] = []
    for framework in ("tf", "flax"):
        mirrored = _counterparts(framework, read_classes(files[framework], FORWARD[framework]), problems)
        expected_order = [_mirrored_name(framework, shape.name) for shape in reference]
        found_order = [shape.name for shape in mirrored]
        if found_order != expected_order:
            problems.append(f"{framework}: classes {found_order}, expected in this order: {expected_order}")
        by_name = {shape.name: shape for shape in mirrored}
        for pt_shape in reference:
            shape = by_name.get(_mirrored_name(framework, pt_shape.name))
            if shape is not None:
                _compare_class(framework, pt_shape, shape, problems)
    return problems
