"""The report: ``report.json`` (every row, per-layer values, inputs, timings) and ``REPORT.md`` (tables to read)."""

from __future__ import annotations

import itertools
import json
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from whisper_multi.tools import check

from .matrix import CONFIGS, MatrixResult

JSON_NAME, MARKDOWN_NAME = "report.json", "REPORT.md"
VERSIONED = ("whisper-multi", "numpy", "torch", "tensorflow-cpu", "tensorflow", "keras", "jax", "jaxlib", "flax")


def environment() -> dict[str, Any]:
    import os

    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "packages": versions,
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    }


def summary(rows: Sequence[check.Row]) -> dict[str, Any]:
    counts = {status: sum(row.status == status for row in rows) for status in check.STATUS_ORDER}
    return {"counts": counts, "exit_code": check.exit_code(rows)}


def first_divergence(rows: Sequence[check.Row]) -> list[dict[str, str]]:
    """Per config, source and pair: the first stage in pipeline order that did not pass."""
    order = {stage: index for index, stage in enumerate(s for group in check.STAGE_GROUPS for s in check.STAGES[group])}
    found: dict[tuple[str, str, str], check.Row] = {}
    for row in rows:
        if row.status not in (check.FAIL, check.ERROR):
            continue
        key = (row.config, row.source, row.pair)
        if key not in found or order.get(row.stage, 99) < order.get(found[key].stage, 99):
            found[key] = row
    return [
        {"config": c, "source": s, "pair": p, "stage": row.stage, "status": row.status, "note": row.note}
        for (c, s, p), row in found.items()
    ]


def limiting_stages(rows: Sequence[check.Row]) -> dict[str, dict[str, Any]]:
    """For each real checkpoint (direct source): the largest difference of the encoder stages, of the decoder
    stages fed identical encoder states, and end to end; and which stages exceed the target."""
    analysis: dict[str, dict[str, Any]] = {}
    for name, spec in CONFIGS.items():
        direct = [row for row in rows if row.config == name and row.source == "direct" and row.max_abs is not None]
        if not spec.real or not direct:
            continue

        def worst(stages: Sequence[str], rows_of: list[check.Row] = direct) -> dict[str, Any] | None:
            chosen = [row for row in rows_of if row.stage in stages and "-" in row.pair]
            if not chosen:
                return None
            row = max(chosen, key=lambda r: r.max_abs or 0.0)
            return {"stage": row.stage, "pair": row.pair, "max_abs": row.max_abs, "note": row.note}

        target = next((row.target for row in direct if row.target is not None), None)
        above = [
            {"stage": row.stage, "pair": row.pair, "max_abs": row.max_abs}
            for row in direct
            if target is not None and row.measure == "abs" and "-" in row.pair and (row.max_abs or 0.0) > target
        ]
        analysis[name] = {
            "target": target,
            "encoder": worst(check.STAGES["encoder"]),
            "decoder hidden states and attentions": worst(
                ("decoder_hidden_states", "decoder_attentions", "cross_attentions")
            ),
            "decoder logits (identical encoder states)": worst(("logits",)),
            "end-to-end logits": worst(("e2e_logits",)),
            "above target": above,
            "growth": {
                row.stage + " " + row.pair: [pair[0] for pair in row.layers or []]
                for row in direct
                if row.stage in ("encoder_hidden_states", "decoder_hidden_states") and "-" in row.pair
            },
        }
    return analysis


def write_report(
    result: MatrixResult,
    structure: list[str],
    out: Path,
    command: str,
    wall_s: float,
    selection: dict[str, Any],
) -> dict[str, Any]:
    rows = result.rows
    if structure:
        rows = [*rows, _structure_row(structure)]
    data = {
        "command": command,
        "wall_s": round(wall_s, 1),
        "selection": selection,
        "environment": environment(),
        "summary": summary(rows),
        "skipped_frameworks": result.skipped,
        "structure": {"passed": not structure, "problems": structure},
        "first_divergence": first_divergence(rows),
        "limiting_stages": limiting_stages(rows),
        "configs": result.configs,
        "inputs": result.inputs,
        "timings_s": {c: {k: round(v, 2) for k, v in t.items()} for c, t in result.timings.items()},
        "rows": [row.to_dict() for row in rows],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / JSON_NAME).write_text(json.dumps(data, indent=1, default=float) + "\n", encoding="utf-8")
    (out / MARKDOWN_NAME).write_text(markdown(data, rows), encoding="utf-8")
    return data


def _structure_row(problems: list[str]) -> check.Row:
    pair, note = "-".join(check.FRAMEWORKS), "; ".join(problems)
    return check.Row("all", "source files", "structure", pair, None, None, 0.0, check.FAIL, note=note)


def _number(value: float | None) -> str:
    return check.format_value(value)


def markdown(data: dict[str, Any], rows: Sequence[check.Row]) -> str:
    counts = data["summary"]["counts"]
    lines = [
        "# Cross-framework conformance report",
        "",
        f"Command: `{data['command']}` — wall time {data['wall_s']:.0f} s — exit code {data['summary']['exit_code']}.",
        "",
        "Environment: "
        + ", ".join(f"{k} {v}" for k, v in data["environment"]["packages"].items())
        + f", Python {data['environment']['python']}, TF_ENABLE_ONEDNN_OPTS={data['environment']['TF_ENABLE_ONEDNN_OPTS']}.",
        "",
        "Result: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n or status == check.PASS) + ".",
        "",
    ]
    lines += _method_section()
    lines += _structure_section(data)
    lines += _problems_section(data, rows)
    lines += _float64_section(rows)
    lines += _limiting_section(data)
    lines += [
        "## Configs",
        "",
        "| config | description | d_model | layers (enc+dec) | heads | vocab | mel bins | parameters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, info in data["configs"].items():
        lines.append(
            f"| {name} | {info['description']} | {info['d_model']} | {info['encoder_layers']}+{info['decoder_layers']} "
            f"| {info['heads']} | {info['vocab_size']} | {info['num_mel_bins']} | {info['parameters']:,} |"
        )
    lines += ["", "## Results", ""]
    for name in data["configs"]:
        config_rows = [row for row in rows if row.config == name]
        seconds = data["timings_s"].get(name, {}).get("total")
        lines += [f"### {name}" + (f" ({seconds:.0f} s)" if seconds is not None else ""), ""]
        lines += [check.markdown_table(config_rows, with_config=False), ""]
    return "\n".join(lines) + "\n"


def _method_section() -> list[str]:
    """How the rows are measured and where each bound comes from (the tolerance column as ``check`` explains it)."""
    return [
        "Every stage is fed identical inputs in every framework (the same mel features; the decoder stages the same "
        "encoder states, those of the first framework listed), so a difference names the stage that makes it. "
        "Differences are max and mean absolute values (gradients: relative to the largest magnitude of the first "
        "framework's gradient, per parameter; token ids: the number of differing positions). `not available` and "
        "`skipped` rows are not passes.",
        "",
        "Where the bounds come from: the `float64` stage builds every framework's model in float64 and feeds it the "
        f"float32 model's inputs. The frameworks must agree there to {check.FLOAT64_TOLERANCE:g} on every output "
        "(`float64_*` rows): the three implement the same math. Each framework's float32 outputs are then measured "
        "against its own float64 ones (`float32_error_*` rows) and judged against the config's tolerances. A `derived` "
        "pair bound follows from the triangle inequality (|a32 - b32| <= |a32 - a64| + |a64 - b64| + |b64 - b32|, "
        "elementwise), so it follows the CPU that runs the suite instead of one machine's run. Rows without a float64 "
        "measurement (step-by-step decoding, gradients, classification, token ids) keep fixed bounds.",
        "",
        check.TOLERANCE_LEGEND,
        "",
    ]


def _structure_section(data: dict[str, Any]) -> list[str]:
    structure = data["structure"]
    lines = ["## Structure of the three model files", ""]
    if structure["passed"]:
        lines.append(
            "Same classes in the same order, same attributes and forward arguments (after the exceptions listed in "
            "`conformance/structure.py`): PASS."
        )
    else:
        lines += ["FAIL — drift between the model files:", ""] + [f"- {problem}" for problem in structure["problems"]]
    return [*lines, ""]


def _problems_section(data: dict[str, Any], rows: Sequence[check.Row]) -> list[str]:
    lines = []
    if data["first_divergence"]:
        lines += [
            "## Where the frameworks part (first stage that did not pass)",
            "",
            "| config | source | pair | stage | result | note |",
            "|---|---|---|---|---|---|",
        ]
        for item in data["first_divergence"]:
            lines.append(
                f"| {item['config']} | {item['source']} | {item['pair']} | {item['stage']} | {item['status'].upper()} | {item['note'].replace('|', '/')} |"
            )
        lines.append("")
    missing = sorted({(row.stage, row.note) for row in rows if row.status == check.NOT_AVAILABLE})
    if missing:
        lines += (
            ["## Not available (counted as not passed)", ""] + [f"- {stage}: {note}" for stage, note in missing] + [""]
        )
    if data["skipped_frameworks"]:
        lines += (
            ["## Skipped frameworks", ""]
            + [f"- {name}: {why}" for name, why in data["skipped_frameworks"].items()]
            + [""]
        )
    return lines


def _float64_section(rows: Sequence[check.Row]) -> list[str]:
    """Per config: the float64 difference of each pair and each framework's float32 distance from its float64."""
    measured = [row for row in rows if row.source == "direct" and row.stage.startswith(("float64_", "float32_error_"))]
    if not measured:
        return []
    pairs = list(dict.fromkeys(row.pair for row in measured if row.stage.startswith("float64_")))
    frameworks = list(dict.fromkeys(row.pair for row in measured if row.stage.startswith("float32_error_")))
    lines = [
        "## Float64 proof and each framework's float32 error",
        "",
        "Max abs differences per stage (direct weights): float64 between frameworks, and float32 against the same "
        "framework's float64.",
        "",
    ]
    for config in dict.fromkeys(row.config for row in measured):
        found = {(row.stage, row.pair): row.max_abs for row in measured if row.config == config}
        header = [f"float64 {pair}" for pair in pairs] + [f"float32 error {name}" for name in frameworks]
        lines += [f"### {config}", "", "| stage | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
        for stage in check.FLOAT64_STAGES:
            cells = [found.get((f"float64_{stage}", pair)) for pair in pairs]
            cells += [found.get((f"float32_error_{stage}", name)) for name in frameworks]
            lines.append(f"| {stage} | " + " | ".join(_number(value) for value in cells) + " |")
        lines.append("")
    return lines


def _growth_sentences(info: dict[str, Any]) -> list[str]:
    """Where the difference jumps: the largest step between consecutive hidden states, per stack."""
    sentences = []
    for stack in ("encoder", "decoder"):
        series = [values for label, values in info["growth"].items() if label.startswith(stack) and len(values) > 1]
        if not series:
            continue
        worst = max(series, key=lambda values: values[-1])
        steps = [b - a for a, b in itertools.pairwise(worst)]
        at = int(max(range(len(steps)), key=lambda i: steps[i]))
        final = " (the final layer norm)" if at == len(steps) - 1 else ""
        sentences.append(
            f"- {stack}: the difference grows most from state {at} to {at + 1}{final}: "
            f"{_number(worst[at])} -> {_number(worst[at + 1])}"
        )
    decoder, e2e = info.get("decoder logits (identical encoder states)"), info.get("end-to-end logits")
    if decoder and e2e:
        sentences.append(
            f"- logits: {_number(decoder['max_abs'])} from the decoder alone (identical encoder states), "
            f"{_number(e2e['max_abs'])} end to end: the encoder's difference adds the rest"
        )
    return sentences


def _limiting_section(data: dict[str, Any]) -> list[str]:
    analysis = data["limiting_stages"]
    if not analysis:
        return []
    lines = ["## Real weights: where the difference grows", ""]
    for name, info in analysis.items():
        target = "" if info["target"] is None else f" (target {info['target']:g})"
        lines += [f"### {name}{target}", ""]
        for label in (
            "encoder",
            "decoder hidden states and attentions",
            "decoder logits (identical encoder states)",
            "end-to-end logits",
        ):
            item = info.get(label)
            if item:
                lines.append(
                    f"- {label}: {_number(item['max_abs'])} ({item['stage']}, {item['pair']}{'; ' + item['note'] if item['note'] else ''})"
                )
        lines += _growth_sentences(info)
        if info["above target"]:
            worst_of: dict[str, float] = {}
            for item in info["above target"]:
                worst_of[item["stage"]] = max(worst_of.get(item["stage"], 0.0), item["max_abs"])
            above = ", ".join(f"{stage} {_number(value)}" for stage, value in worst_of.items())
            lines.append(f"- above the target: {above}")
        if info["growth"]:
            width = max(len(values) for values in info["growth"].values())
            lines += [
                "",
                "| hidden states (max abs per state: embeddings, layer 1, ..., final layer norm) | "
                + " | ".join(str(i) for i in range(width))
                + " |",
                "|---|" + "---|" * width,
            ]
            for label, values in info["growth"].items():
                lines.append(f"| {label} | " + " | ".join(_number(v) for v in values) + " |")
        lines.append("")
    return lines


def rewrite_markdown(out: Path) -> Path:
    """Write ``REPORT.md`` again from ``report.json`` (e.g. after changing this module's tables)."""
    data = json.loads((out / JSON_NAME).read_text(encoding="utf-8"))
    rows = [check.Row(**row) for row in data["rows"]]
    path = out / MARKDOWN_NAME
    path.write_text(markdown(data, rows), encoding="utf-8")
    return path
