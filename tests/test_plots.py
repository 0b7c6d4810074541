"""Every figure renders with Agg, returns its Axes, and holds the data it was given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.axes import Axes

from pyro_dgm import plots
from pyro_dgm.infer import History


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_density_2d_draws_the_density_on_its_grid_and_the_samples() -> None:
    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * (x**2).sum(-1) - math.log(2 * math.pi)

    samples = torch.randn(50, 2)
    ax = plots.density_2d(log_prob, samples=samples, bounds=(-3, 3, -2, 2), resolution=20)
    assert isinstance(ax, Axes)
    image = ax.images[0].get_array()
    xs, ys = np.linspace(-3, 3, 20), np.linspace(-2, 2, 20)
    expected = np.exp(-0.5 * (xs[None, :] ** 2 + ys[:, None] ** 2)) / (2 * np.pi)
    assert np.allclose(image, expected, rtol=1e-5)  # row = y, column = x (origin lower)
    assert np.allclose(ax.collections[0].get_offsets(), samples.numpy())
    assert ax.get_xlim() == (-3, 3) and ax.get_ylim() == (-2, 2)
    _, given = plt.subplots()
    assert plots.density_2d(log_prob, ax=given) is given


def test_image_grid_tiles_the_images() -> None:
    images = torch.randint(0, 17, (5, 1, 8, 8))
    ax = plots.image_grid(images, num_levels=17, ncols=3)
    canvas = np.asarray(ax.images[0].get_array())
    assert canvas.shape == (2 * 9 + 1, 3 * 9 + 1)
    for i in range(5):
        r, c = divmod(i, 3)
        tile = canvas[1 + 9 * r : 9 + 9 * r, 1 + 9 * c : 9 + 9 * c]
        assert np.allclose(tile, images[i, 0].numpy() / 16)
    with pytest.raises(ValueError, match="shape"):
        plots.image_grid(torch.zeros(2, 8, 8))


def test_training_curve_plots_the_history() -> None:
    history = History(
        epoch=[1, 2, 3], train_loss=[3.0, 2.0, 1.5], validation_loss=[3.2, 2.1, 2.3], best_epoch=2
    )
    for source in (history, history.to_dict()):
        ax = plots.training_curve(source)
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert np.allclose(lines["train"].get_ydata(), [3.0, 2.0, 1.5])
        assert np.allclose(lines["validation"].get_ydata(), [3.2, 2.1, 2.3])
        assert np.allclose(lines["best epoch"].get_xdata(), [2, 2])


def test_latent_scatter_colours_each_label() -> None:
    z = torch.randn(30, 3)
    labels = torch.arange(30) % 3
    ax = plots.latent_scatter(z, labels, dims=(0, 2))
    assert isinstance(ax, Axes) and len(ax.collections) == 3
    for collection, c in zip(ax.collections, range(3), strict=True):
        assert collection.get_label() == str(c)
        assert np.allclose(collection.get_offsets(), z[labels == c][:, [0, 2]].numpy())
    colours = {tuple(col.get_facecolor()[0]) for col in ax.collections}
    assert len(colours) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    plain = plots.latent_scatter(z.numpy())
    assert np.allclose(plain.collections[0].get_offsets(), z[:, :2].numpy())
    with pytest.raises(ValueError, match="labels"):
        plots.latent_scatter(z, labels[:5])
    with pytest.raises(ValueError, match="D >= 2"):
        plots.latent_scatter(torch.randn(5, 1))


def test_pareto_k_plot_bands_and_lines() -> None:
    k = np.array([0.1, 0.6, 0.9, 0.3, 1.4, np.inf, np.nan])
    ax = plots.pareto_k_plot(k)
    by_label = {c.get_label().split(" (")[0]: c for c in ax.collections}
    assert np.allclose(by_label["k <= 0.5"].get_offsets(), [[0, 0.1], [3, 0.3]])
    assert np.allclose(by_label["0.5 < k <= 0.7"].get_offsets(), [[1, 0.6]])
    assert np.allclose(by_label["k > 0.7"].get_offsets(), [[2, 0.9], [4, 1.4]])
    assert by_label["k = inf"].get_offsets()[0][0] == 5
    levels = sorted(line.get_ydata()[0] for line in ax.get_lines())
    assert levels == [0.5, 0.7]
    with pytest.raises(ValueError, match="1-D"):
        plots.pareto_k_plot(np.zeros((2, 2)))


def test_elbo_surgery_bars_hold_each_models_terms() -> None:
    results = {
        "normal prior": {
            "mutual_information": 2.0,
            "marginal_kl": 3.0,
            "stderr": {"mutual_information": 0.1, "marginal_kl": 0.2},
        },
        "flow prior": {"mutual_information": 2.2, "marginal_kl": 0.5},
    }
    ax = plots.elbo_surgery_bars(results)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["normal prior", "flow prior"]
    containers = ax.containers
    heights = [[bar.get_height() for bar in c] for c in containers if hasattr(c, "patches")]
    assert heights == [[2.0, 2.2], [3.0, 0.5]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "mutual information",
        "marginal KL",
    ]
    with pytest.raises(ValueError, match="lacks"):
        plots.elbo_surgery_bars({"m": {"elbo": 1.0}})
    with pytest.raises(ValueError, match="at least one"):
        plots.elbo_surgery_bars({})


def test_per_class_figures_put_each_class_in_its_row() -> None:
    data = torch.randint(0, 17, (3, 4, 1, 8, 8))
    samples = torch.randint(0, 17, (3, 5, 1, 8, 8))
    fig = plots.class_image_samples_figure(data, samples, num_levels=17, classes=["a", "b", "c"])
    left, right = fig.axes
    canvas = np.asarray(right.images[0].get_array())
    assert canvas.shape == (3 * 9 + 1, 5 * 9 + 1)  # a row per class, a column per draw
    for k in range(3):
        assert np.allclose(canvas[1 + 9 * k : 9 + 9 * k, 1:9], samples[k, 0, 0].numpy() / 16)
    assert [t.get_text() for t in left.texts] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="samples: expected 3 classes"):
        plots.class_image_samples_figure(data, samples[:2])
    with pytest.raises(ValueError, match=r"data: expected one row per class, shape \(K, n"):
        plots.class_image_samples_figure(data[0], samples)
    with pytest.raises(ValueError, match="classes: expected 3 names"):
        plots.class_image_samples_figure(data, samples, classes=["a"])

    points, labels = torch.randn(20, 2), torch.arange(20) % 2
    fig = plots.class_points_figure(points, labels, torch.randn(10, 2), torch.arange(10) // 5)
    assert [len(ax.collections) for ax in fig.axes] == [2, 2]  # one colour per class

    sequences = torch.randint(0, 17, (4, 2, 1, 16))
    fig = plots.class_sequence_samples_figure(sequences, sequences.flip(-1))
    assert len(fig.axes) == 4 and all(len(ax.get_lines()) == 4 for ax in fig.axes)
