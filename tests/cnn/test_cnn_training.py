"""Training (SPEC N6): losses, the optimiser and schedule, learning on a tiny set, determinism on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morphomass.cnn.architectures import build_gz2_net, make_ml_net
from morphomass.cnn.training import CnnModule, fit_network, l1_tilde_loss, weighted_median
from morphomass.config import load_config

CONFIG = load_config("tiny").cnn.model_copy(update={"accelerator": "cpu", "devices": 1, "batch_size": 16})


def test_weighted_median_minimises_the_weighted_l1() -> None:
    rng = np.random.default_rng(0)
    values, weights = rng.lognormal(size=51), rng.uniform(0.1, 5, 51)
    best = weighted_median(values, weights)
    costs = [np.sum(weights * np.abs(values - c)) for c in values]
    assert best == values[int(np.argmin(costs))]


def test_l1_tilde_loss() -> None:
    pred, target, err = torch.tensor([1.0, 4.0]), torch.tensor([2.0, 2.0]), torch.tensor([0.5, 1.0])
    assert float(l1_tilde_loss(pred, target, err)) == pytest.approx((1 / 0.5 + 2 / 1.0) / 2)


def test_optimiser_and_schedule_are_the_papers() -> None:
    module = CnnModule(build_gz2_net("dieleman"), task="gz2", config=load_config("paper").cnn)
    setup = module.configure_optimizers()
    assert isinstance(setup["optimizer"], torch.optim.NAdam)
    scheduler = setup["lr_scheduler"]["scheduler"]
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (scheduler.factor, scheduler.patience, scheduler.mode) == (0.3, 4, "min")
    assert setup["lr_scheduler"]["monitor"] == "val_loss"


def test_tiny_training_lowers_the_validation_loss(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    images, targets = blobs
    torch.manual_seed(0)
    net = build_gz2_net("dieleman")
    result = fit_network(
        net,
        (images[:160], targets[:160]),
        (images[160:], targets[160:]),
        task="gz2",
        config=CONFIG,
        epochs=3,
        progress=False,
    )
    history = result.history
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    assert result.best_val_loss < 0.7 * history[0]["val_loss"]
    assert result.best_val_loss == min(row["val_loss"] for row in history)
    assert history[result.best_epoch]["val_loss"] == result.best_val_loss
    assert all(row["lr"] == pytest.approx(CONFIG.learning_rate) for row in history[1:])  # no plateau yet
    assert result.n_train == 160 and result.n_val == 40
    # the returned weights are the best epoch's, and the network holds them
    for key, value in net.state_dict().items():
        assert torch.equal(value, result.state_dict[key])


def test_training_is_deterministic_on_cpu(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    images, targets = blobs
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        net = build_gz2_net("dieleman")
        result = fit_network(
            net,
            (images[:64], targets[:64]),
            (images[64:80], targets[64:80]),
            task="gz2",
            config=CONFIG,
            epochs=1,
            progress=False,
        )
        states.append(result)
    assert states[0].history[1]["val_loss"] == states[1].history[1]["val_loss"]
    for key, value in states[0].state_dict.items():
        assert torch.equal(value, states[1].state_dict[key]), key
    assert not torch.are_deterministic_algorithms_enabled()  # the global switch is put back


def test_cnn4_learns_ml_from_images(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    """CNN4 on a GZ2-trained trunk: the L1~ loss falls below that of the best constant."""
    images, targets = blobs
    q = targets[:, 0] / 0.95  # the blobs' axis ratio (p_smooth = 0.95 q)
    ml = (0.5 + 3.0 * q).astype(np.float32)
    err = (0.1 * ml).astype(np.float32)
    torch.manual_seed(0)
    base = build_gz2_net("dieleman")
    fit_network(
        base,
        (images[:160], targets[:160]),
        (images[160:], targets[160:]),
        task="gz2",
        config=CONFIG,
        epochs=2,
        progress=False,
    )
    net = make_ml_net(base)
    constant = weighted_median(ml[:160], 1 / err[:160])
    with torch.no_grad():
        net.out.bias.fill_(constant)
    train, val = (images[:160], ml[:160], err[:160]), (images[160:], ml[160:], err[160:])
    result = fit_network(net, train, val, task="ml", config=CONFIG, epochs=3, progress=False)
    constant_loss = float(np.mean(np.abs(constant - ml[160:]) / err[160:]))
    assert result.best_val_loss < 0.8 * constant_loss
