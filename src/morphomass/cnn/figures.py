"""The training-curves figure of the CNN stage (``results/figures/cnn_training_curves.png``)."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_training_curves"]


def plot_training_curves(cards: dict[str, dict[str, Any]]) -> Figure:
    """One panel per network: training and validation loss per epoch, the best epoch marked.

    Parameters
    ----------
    cards : dict of str to dict
        Network name -> its card (``history`` rows with ``epoch``, ``train_loss``, ``val_loss``; ``kind``;
        ``best_epoch``; ``backbone``; ``input_size``).

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot; save it with ``fig.savefig``.
    """
    n = max(len(cards), 1)
    fig = Figure(figsize=(3.6 * n, 3.2), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, card) in zip(axes, cards.items(), strict=False):
        history = card.get("history", [])
        epochs = [row["epoch"] for row in history]
        train = [row["train_loss"] for row in history]
        val = [row["val_loss"] for row in history]
        trained = [(e, t) for e, t in zip(epochs, train, strict=True) if t is not None]
        if trained:
            ax.plot(*zip(*trained, strict=True), "o-", ms=3, label="training (augmented)")
        ax.plot(epochs, val, "s-", ms=3, label="validation")
        best = card.get("best_epoch")
        if best is not None and best in epochs:
            ax.axvline(best, color="0.6", ls=":", lw=1)
            ax.plot([best], [val[epochs.index(best)]], "*", color="C3", ms=10, label=f"best (epoch {best})")
        loss = "L1~ on the target" if card.get("kind") == "ml" else "MSE on GZ2 probabilities"
        ax.set_title(f"{name}: {card.get('backbone')} @ {card.get('input_size')} px", fontsize=9)
        ax.set_xlabel("epoch (0 = before training)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(loss)
        if all(v > 0 for v in val + [t for _, t in trained]):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    if not cards:
        axes[0].text(0.5, 0.5, "no trained network", ha="center", va="center", transform=axes[0].transAxes)
    return fig
