import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nscl.results.plots import plot_accuracy_matrix  # noqa: E402


@pytest.mark.parametrize("n", [3, 25])
def test_accuracy_matrix_labels_tasks_from_one(n):
    """Large matrices (a 25-task protocol) get seaborn's thinned ticks, still numbered from task 1."""
    accuracy = np.tril(np.full((n, n), 0.5))
    accuracy[np.triu_indices(n, 1)] = np.nan
    fig, ax = plt.subplots(figsize=(2.5, 2.5))  # small panels, as in a grid of matrices
    plot_accuracy_matrix(ax, accuracy)
    fig.canvas.draw()
    x = [int(t.get_text()) for t in ax.get_xticklabels()]
    y = [int(t.get_text()) for t in ax.get_yticklabels()]
    assert x[0] == 1 and y[0] == 1 and max(x) <= n and max(y) <= n
    assert x == sorted(x) and len(x) >= min(n, 5)
    plt.close(fig)


def test_identical_step_curves_stay_visible_one_inside_the_other():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from nscl.results.plots import plot_step_accuracies

    rows = [
        {"method": m, "seed": 0, "task": t, "accuracy": a}
        for m in ("VPT-NSP²", "VPT-frozen")
        for t, a in [(1, 0.9), (2, 0.8)]
    ]
    fig, ax = plt.subplots()
    plot_step_accuracies(ax, pd.DataFrame(rows))
    first, second = ax.get_lines()
    assert first.get_marker() != second.get_marker()
    assert second.get_linewidth() < first.get_linewidth() and second.get_markersize() < first.get_markersize()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["VPT-NSP² (1 seed)", "VPT-frozen (1 seed)"]
    plt.close(fig)
