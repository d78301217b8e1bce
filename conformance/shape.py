"""The code's shape, measured: the longest function and the largest module outside the three model files, the files
that spell backend module names, and comments or docstrings that carry measured figures (a timing, a size, a
speed-up), which go stale and belong in benchmarks/results.md.

    python -m conformance.shape        # the figures, then every offender

tests/test_shape.py holds the limits (DEVELOPERS.md, "Shape of the code").
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "whisper_multi"
# The model files are tensor code kept as three mirrors (conformance/structure.py); their size follows the model.
MODEL_FILES = frozenset({"pt/modeling_whisper.py", "tf/modeling_tf_whisper.py", "flax/modeling_flax_whisper.py"})
SPELLING_ROOTS = ("src", "tests", "benchmarks", "conformance", "scripts")
BACKEND_MODULE_NAME = re.compile(r"[\"']whisper_multi\.(pt|tf|flax)\b")
# A number with a unit of time below a second, of size or of throughput, or a speed-up: "5.4 ms", "80 MB", "2.6x
# faster", "22% slower". Seconds are left out: they are the model's facts (the 30 s window) and the thresholds of
# the long-form rules, not measurements.
MEASURED_FIGURE = re.compile(
    r"\d(?:[\d.,]*)\s*(?:ms|µs|us|ns|[KMGT]i?B(?:/s)?)\b"
    r"|\d(?:[\d.]*)\s*(?:x|×)\s*(?:faster|slower|smaller|larger|less|more|the)\b"
    r"|\d(?:[\d.]*)\s*%\s*(?:faster|slower|smaller|larger|less|more|of the time)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Place:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.what}"


def python_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*.py") if ".nox" not in path.parts)


def outside_model_files() -> list[Path]:
    return [path for path in python_files(SRC) if str(path.relative_to(SRC)) not in MODEL_FILES]


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def function_lengths(paths: list[Path]) -> list[tuple[int, Place]]:
    """(lines, place) of every function and method, longest first."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                found.append((length, Place(_relative(path), node.lineno, node.name)))
    return sorted(found, key=lambda item: -item[0])


def module_lengths(paths: list[Path]) -> list[tuple[int, Place]]:
    found = [(len(path.read_text().splitlines()), Place(_relative(path), 1, path.name)) for path in paths]
    return sorted(found, key=lambda item: -item[0])


def files_spelling_backend_modules() -> list[str]:
    return sorted(
        _relative(path)
        for base in SPELLING_ROOTS
        for path in python_files(ROOT / base)
        if BACKEND_MODULE_NAME.search(path.read_text())
    )


def _comments_and_docstrings(path: Path) -> list[tuple[int, str]]:
    text = path.read_text()
    found = [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                found.append((node.body[0].lineno, docstring))
    return found


def measured_figures(paths: list[Path]) -> list[Place]:
    return [
        Place(_relative(path), line, repr(match.group(0)))
        for path in paths
        for line, text in _comments_and_docstrings(path)
        for match in MEASURED_FIGURE.finditer(text)
    ]


def main() -> int:
    functions, modules = function_lengths(outside_model_files()), module_lengths(outside_model_files())
    spelled, figures = files_spelling_backend_modules(), measured_figures(python_files(SRC))
    print(f"longest function outside the model files: {functions[0][0]} lines ({functions[0][1]})")
    print(f"largest module outside the model files: {modules[0][0]} lines ({modules[0][1].path})")
    print(f"files spelling backend module names: {len(spelled)} ({', '.join(spelled)})")
    print(f"measured figures in comments or docstrings: {len(figures)}")
    for title, rows in (
        ("functions over 60 lines", [f"{n} {place}" for n, place in functions if n > 60]),
        ("modules over 700 lines", [f"{n} {place.path}" for n, place in modules if n > 700]),
        ("figures", [str(place) for place in figures]),
    ):
        if rows:
            print(f"\n{title}:", *(f"  {row}" for row in rows), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
