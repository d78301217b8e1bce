"""The package's layers: which part of whisper_multi may import which (DEVELOPERS.md, "Shape of the code").

Read from the source (import statements), so a forbidden import fails here before anyone runs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from whisper_multi.backends import INFERENCE_BACKENDS

SRC = Path(__file__).resolve().parents[1] / "src" / "whisper_multi"
BACKEND_PARTS = {backend.package.rsplit(".", 1)[1] for backend in INFERENCE_BACKENDS.values()}
# ``export`` for the names of what each backend writes and the onnx backend reads (export/graphs.py).
CORE_FOR_MODELS = {
    "errors",
    "configuration",
    "backends",
    "hub",
    "modeling",
    "decoding",
    "weights",
    "training",
    "export",
}
CORE = {
    "errors",
    "jsonfile",
    "hub",
    "backends",
    "text",
    "configuration",
    "features",
    "audio",
    "modeling",
    "decoding",
    "weights",
}
TOOLS_SEE = CORE | {"processing", "longform", "training", "finetuning", "export", "__version__"} | BACKEND_PARTS

# Part of the package -> the parts it may import (itself always). Lower layers never import higher ones.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "jsonfile": {"errors", "hub"},
    # Checkpoints by Hub name: a base layer, so the config, feature extractor and tokenizers resolve names too.
    "hub": {"errors"},
    "backends": {"errors"},
    "text": {"errors", "jsonfile", "backends", "hub"},
    "configuration": {"errors", "jsonfile", "text", "hub"},
    "features": {"errors", "jsonfile", "backends", "hub"},
    "audio": {"errors", "features"},
    "modeling": {"errors", "configuration"},
    "decoding": {"errors", "backends", "configuration", "modeling", "text"},
    "weights": {"errors", "jsonfile", "backends", "configuration", "features", "text", "hub"},
    "processing": {"errors", "audio", "configuration", "features", "text", "weights", "hub"},
    "longform": {"errors", "backends", "configuration", "audio", "features", "text", "decoding"},
    # What every backend's optimizer step reads (options, schedule, batch order, collator): below the backends.
    "training": {"errors", "backends", "modeling"},
    # The run on top of the backends' steps: data, evaluation, checkpoints.
    "finetuning": {"errors", "jsonfile", "backends", "training", "longform"},
    # Artifacts that decode: the core's plan traced by each backend's export module.
    "export": {"errors", "jsonfile", "backends", "decoding"},
    # Each backend sees the core below the long-form layer, never another backend.
    **{part: CORE_FOR_MODELS for part in BACKEND_PARTS},
    # The tools sit on top: everything.
    "tools": TOOLS_SEE,
    "__main__": {"tools"},
    "__init__": set(),
}


def part_of(module: str) -> str:
    """``whisper_multi.text.tokenization`` -> ``text``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_parts(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "whisper_multi":
            if node.module == "whisper_multi":
                found.update(alias.name for alias in node.names)
            else:
                found.add(part_of(node.module))
        elif isinstance(node, ast.Import):
            found.update(part_of(alias.name) for alias in node.names if alias.name.startswith("whisper_multi."))
    return found


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(SRC)))
def test_module_imports_only_its_layers(path: Path) -> None:
    relative = path.relative_to(SRC)
    part = relative.parts[0].removesuffix(".py")
    assert part in ALLOWED, f"{relative}: part {part!r} has no row in ALLOWED (tests/test_layers.py); add one"
    forbidden = imported_parts(path) - ALLOWED[part] - {part}
    assert not forbidden, f"{relative} imports {sorted(forbidden)}; {part!r} may import only {sorted(ALLOWED[part])}"


def test_every_layer_row_names_a_real_part() -> None:
    parts = {path.relative_to(SRC).parts[0].removesuffix(".py") for path in modules()}
    assert set(ALLOWED) - parts == set()


def test_a_forbidden_import_is_found(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text("from whisper_multi.tools.cli import main\nimport whisper_multi.pt.loading\n")
    assert imported_parts(module) == {"tools", "pt"}
