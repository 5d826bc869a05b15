"""The Markdown evaluation report, laid out like Table 2 of the seed paper, plus today's metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from triage.domain import CLASSES

#: The seed paper's best row (W4: three sigmoid windows, single stage, RSNA test split), for comparison.
PAPER_W4: Mapping[str, tuple[float, float, float, int]] = {
    "any": (0.8, 0.96, 0.88, 80),
    "epidural": (0.47, 0.47, 0.47, 19),
    "intraparenchymal": (0.51, 0.65, 0.57, 31),
    "intraventricular": (0.83, 0.17, 0.29, 29),
    "subarachnoid": (0.56, 0.44, 0.49, 32),
    "subdural": (0.73, 0.31, 0.44, 35),
}
TABLE_GROUPS: tuple[tuple[str, ...], ...] = (CLASSES[:3], CLASSES[3:])


def figure(value: Any, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, or "n/a" for a figure that is undefined (None)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def _table(metrics: Mapping[str, Any], group: Sequence[str], label: str, with_paper: bool) -> list[str]:
    header = "| | " + " | ".join(f"{name.capitalize()} P | R | F1 | num" for name in group) + " |"
    rule = "|---|" + "---:|" * (4 * len(group))
    cells = []
    for name in group:
        m = metrics["classes"][name]
        cells += [figure(m["precision"], 2), figure(m["recall"], 2), figure(m["f1"], 2), str(m["count"])]
    lines = [header, rule, f"| {label} | " + " | ".join(cells) + " |"]
    if with_paper:
        paper = [f"{v:.2f}" if isinstance(v, float) else str(v) for name in group for v in PAPER_W4[name]]
        lines.append("| seed paper W4 (RSNA, one stage) | " + " | ".join(paper) + " |")
    return lines


def markdown_report(
    metrics: Mapping[str, Any],
    *,
    title: str,
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    figures: Mapping[str, str],
    with_paper: bool = True,
) -> str:
    """The report as Markdown text.

    Parameters
    ----------
    metrics
        From :func:`triage.training.metrics.class_metrics`.
    title
        First heading.
    model
        Model facts to list (version, backbone, input size, thresholds source).
    data
        Data facts to list (directory, slices, studies).
    figures
        Caption -> relative PNG path.
    with_paper
        Add the seed paper's W4 row under ours (its figures come from RSNA, not from this data).
    """
    lines = [f"# {title}", ""]
    lines += [f"- **{key}**: {value}" for key, value in model.items()]
    lines += [f"- **{key}**: {value}" for key, value in data.items()]
    lines += ["", "## Precision, recall, F1 and count per class (layout of the seed paper's Table 2)", ""]
    lines += ["At the model's thresholds, slice level; *num* is the number of positive slices.", ""]
    label = f"this model ({metrics.get('slices', '?')} slices)"
    for group in TABLE_GROUPS:
        lines += _table(metrics, group, label, with_paper) + [""]
    lines += ["## Discrimination", "", "| class | threshold | ROC AUC | 95 % interval | average precision |",
              "|---|---:|---:|---|---:|"]
    for name in CLASSES:
        m = metrics["classes"][name]
        low, high = m["auc_ci95"]
        lines.append(f"| {name} | {m['threshold']:.3f} | {figure(m['auc'], 4)} | "
                     f"{figure(low, 4)} – {figure(high, 4)} | {figure(m['average_precision'], 4)} |")
    lines += ["", f"- **Weighted log loss** (Kaggle RSNA 2019: weight 2 for any, 1 per subtype): "
                  f"{metrics['weighted_log_loss']:.4f}"]
    if "study_auc_any" in metrics:
        low, high = metrics["study_auc_any_ci95"]
        lines.append(f"- **Study-level AUC for any** (maximum over slices, {metrics['studies']} studies, "
                     f"{metrics['positive_studies']} with a bleed): {figure(metrics['study_auc_any'], 4)} "
                     f"(95 % interval {figure(low, 4)} – {figure(high, 4)})")
    if "study_any" in metrics:
        s = metrics["study_any"]
        lines.append(f"- **Worklist flags** (study flagged when a slice's P(any) >= {s['threshold']:.3f}): "
                     f"{s['flagged']} flagged; sensitivity {figure(s['sensitivity'])}, specificity "
                     f"{figure(s['specificity'])}, precision {figure(s['precision'])}")
    lines += ["", "Intervals: percentile bootstrap, resampling whole studies (slices of a study are correlated).", ""]
    for caption, path in figures.items():
        lines += [f"![{caption}]({path})", ""]
    return "\n".join(lines)
