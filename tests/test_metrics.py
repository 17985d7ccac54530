import numpy as np
import pytest

from nscl.metrics import (
    average_incremental_accuracy,
    backward_transfer,
    forgetting,
    forgetting_per_task,
    last_accuracy,
    step_accuracies,
    summarize,
)

NAN = np.nan
R = np.array([[0.9, NAN, NAN], [0.7, 0.8, NAN], [0.6, 0.5, 0.9]])
# A task that improves later: forgetting (best earlier - final) and BWT (final - just learnt) differ.
R2 = np.array([[0.5, NAN, NAN], [0.9, 0.8, NAN], [0.7, 0.85, 0.6]])


def test_step_accuracies_pooled_over_samples():
    # sizes 100, 100, 200: A_2 = (0.6*100 + 0.5*100 + 0.9*200) / 400 = 0.725
    np.testing.assert_allclose(step_accuracies(R, np.array([100, 100, 200])), [0.9, 0.75, 0.725])
    np.testing.assert_allclose(step_accuracies(R), [0.9, 0.75, 2.0 / 3.0])


def test_hand_worked_matrix():
    sizes = np.array([100, 100, 200])
    assert last_accuracy(R, sizes) == pytest.approx(0.725)
    assert average_incremental_accuracy(R, sizes) == pytest.approx((0.9 + 0.75 + 0.725) / 3)
    assert forgetting(R) == pytest.approx(0.3)  # (0.9-0.6 + 0.8-0.5) / 2
    assert backward_transfer(R) == pytest.approx(-0.3)


def test_forgetting_uses_the_best_earlier_accuracy():
    np.testing.assert_allclose(forgetting_per_task(R2), [0.9 - 0.7, 0.8 - 0.85])
    assert forgetting(R2) == pytest.approx(((0.9 - 0.7) + (0.8 - 0.85)) / 2)  # 0.075
    assert backward_transfer(R2) == pytest.approx(((0.7 - 0.5) + (0.85 - 0.8)) / 2)  # 0.125
    assert average_incremental_accuracy(R2) == pytest.approx((0.5 + 0.85 + (0.7 + 0.85 + 0.6) / 3) / 3)


def test_single_task_and_summary():
    one = np.array([[0.42]])
    m = summarize(one)
    assert (m.last_accuracy, m.average_incremental_accuracy, m.forgetting, m.backward_transfer) == (
        0.42,
        0.42,
        0.0,
        0.0,
    )
    assert summarize(R).as_dict()["forgetting"] == pytest.approx(0.3)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((2, 3)), "square"),
        (np.array([[0.5, NAN], [NAN, 0.5]]), "missing"),
        (np.array([[50.0]]), "fractions"),
    ],
)
def test_bad_matrices_fail_clearly(bad, match):
    with pytest.raises(ValueError, match=match):
        summarize(bad)


def test_bad_task_sizes_fail_clearly():
    with pytest.raises(ValueError, match="task_sizes"):
        step_accuracies(R, np.array([1, 2]))


def test_summary_table_mean_and_std_over_seeds():
    import pandas as pd

    from nscl.results.tables import summary_table

    frame = pd.DataFrame(
        {
            "method": ["a", "a", "b"],
            "last_accuracy": [0.5, 0.7, 0.4],
            "average_incremental_accuracy": [0.6, 0.8, 0.5],
            "forgetting": [0.1, 0.3, 0.2],
        }
    )
    table = summary_table(frame)
    assert table.loc["a", "last_accuracy"] == "60.0 ± 14.1"  # std with ddof=1: 0.1*sqrt(2)
    assert table.loc["b", "forgetting"] == "20.0" and table.loc["a", "seeds"] == 2


def test_paired_difference_and_diagonals_on_known_runs():
    import pandas as pd

    from nscl.results.tables import diagonal_frame, paired_difference

    frame = pd.DataFrame(
        {"method": ["a", "a", "b", "b", "b"], "seed": [0, 1, 0, 1, 2], "forgetting": [0.10, 0.20, 0.15, 0.35, 0.9]}
    )
    diff = paired_difference(frame, "a", "b", "forgetting")  # seeds 0, 1 only: -5 and -15 points
    assert diff["seeds"] == 2 and diff["mean"] == pytest.approx(-10.0) and diff["std"] == pytest.approx(50**0.5)
    assert (diff["min"], diff["max"]) == pytest.approx((-15.0, -5.0))
    with pytest.raises(ValueError, match="no common seeds"):
        paired_difference(frame, "a", "c", "forgetting")
    matrices = pd.DataFrame(
        {
            "method": ["a"] * 6,
            "seed": [0, 0, 0, 1, 1, 1],
            "train_task": [0, 1, 1] * 2,
            "eval_task": [0, 0, 1] * 2,
            "accuracy": [0.9, 0.5, 0.8, 0.7, 0.4, 0.6],
            "accuracy_task_aware": [1.0, 0.9, 0.9, 1.0, 0.8, 0.7],
        }
    )
    diag = diagonal_frame(matrices)
    assert list(diag.columns) == ["task 1", "task 2"]
    assert diag.loc["a"].tolist() == pytest.approx([80.0, 70.0])
    assert diagonal_frame(matrices, task_aware=True).loc["a"].tolist() == pytest.approx([100.0, 80.0])
