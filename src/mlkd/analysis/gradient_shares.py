"""Which term steers the student: each objective term's share of the gradient over training.

From the term diagnostics of a run's epoch records (``train.diagnostics_every``,
``mlkd.engine.diagnostics``): at epoch e, term t's share is its weighted gradient norm on the
student outputs it reads over the sum of all terms' norms, ``grad_t / sum_s grad_s`` (BCE
included, so a share of 0.9 for CD means CD's pull is nine times the rest together). Under
``distill.balance: bounded`` the norms are those of the capped weights, and the records also
hold the effective weights (``balance``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from mlkd import optional

#: A colour per built-in term (plugin terms get the cycle's next colours).
TERM_COLOURS = {"bce": "#555555", "mld": "#4c72b0", "cd": "#dd8452", "id": "#c44e52", "rkd": "#55a868"}


def gradient_shares(records: Sequence[Mapping]) -> tuple[list[int], dict[str, list[float]]]:
    """(epochs, {term: share per epoch}) of the records that carry diagnostics; a term absent
    from an epoch's measurements has share 0 there."""
    measured = [r for r in records if (r.get("diagnostics") or {}).get("terms")]
    terms = list(dict.fromkeys(t for r in measured for t in r["diagnostics"]["terms"]))
    shares: dict[str, list[float]] = {t: [] for t in terms}
    for record in measured:
        grads = {t: float(e.get("grad") or 0.0) for t, e in record["diagnostics"]["terms"].items()}
        total = sum(grads.values())
        for t in terms:
            shares[t].append(grads.get(t, 0.0) / total if total > 0 else 0.0)
    return [int(r["epoch"]) for r in measured], shares


def effective_weights(record: Mapping) -> dict[str, tuple[float, float]]:
    """{term: (configured weight, the epoch's mean effective weight)} of a bounded run's record."""
    terms = (record.get("balance") or {}).get("terms") or {}
    return {t: (float(e["weight"]), float(e["effective"])) for t, e in terms.items()}


def gradient_share_chart(runs: Mapping[str, Sequence[Mapping]], path: str | Path, title: str = "") -> bool:
    """A PNG: one panel per run (label -> its epoch records), the terms' gradient shares stacked
    over the epochs. Runs without diagnostics are left out; False when none has any."""
    panels = {label: gradient_shares(records) for label, records in runs.items()}
    panels = {label: found for label, found in panels.items() if found[0]}
    if not panels:
        return False
    plt = optional.pyplot("the gradient-share chart")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 0.6, 3.2), sharey=True, squeeze=False)
    for ax, (label, (epochs, shares)) in zip(axes[0], panels.items()):
        colours = [TERM_COLOURS.get(t) for t in shares]
        ax.stackplot(epochs, *shares.values(), labels=list(shares), colors=colours if all(colours) else None)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        if len(epochs) > 1:
            ax.set_xlim(min(epochs), max(epochs))
        ax.set_ylim(0, 1)
        ax.legend(loc="lower left", fontsize=7)
    axes[0][0].set_ylabel("share of the gradient")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
