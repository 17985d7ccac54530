import numpy as np
import pytest
import torch

from nscl.data import Scenario, available_class_orders, load_class_order


def test_equal_split_sizes_order_and_disjointness():
    order = load_class_order("cifar100_dmnsp")
    sc = Scenario.equal_split(order, 10)
    assert sc.n_tasks == 10 and sc.n_classes == 100
    tasks = [sc.task_classes(t) for t in range(10)]
    assert all(len(t) == 10 for t in tasks)
    assert [c for t in tasks for c in t] == order  # tasks follow the order
    assert len(set().union(*map(set, tasks))) == 100  # and are disjoint
    assert tasks[0][:3] == (87, 0, 52)  # DMNSP / Continual-CLIP order starts 87, 0, 52
    assert list(sc.task_positions(3)) == list(range(30, 40))


def test_base_then_increments():
    sc = Scenario(tuple(range(200)), initial_increment=100, increment=20)
    assert sc.n_tasks == 6
    assert len(sc.task_classes(0)) == 100 and len(sc.task_classes(5)) == 20
    assert sc.n_seen(0) == 100 and sc.n_seen(5) == 200
    assert sc.task_of_position(99) == 0 and sc.task_of_position(100) == 1 and sc.task_of_position(199) == 5


def test_seeded_order_reproduces_the_stored_nsp2_order():
    assert list(Scenario.seeded(100, 10, seed=2024).class_order) == load_class_order("cifar100_nsp2_seed2024")
    assert "tinyimagenet_dmnsp" in available_class_orders()


def test_position_lookup_and_task_indices():
    sc = Scenario((3, 1, 0, 2), 2, 2)
    lookup = sc.position_lookup()
    assert lookup.tolist() == [2, 1, 3, 0]
    targets = torch.tensor([0, 1, 2, 3, 3, 1])
    assert sc.task_indices(targets, 0).tolist() == [1, 3, 4, 5]
    np.testing.assert_array_equal(lookup[targets[sc.task_indices(targets, 1)]], [2, 3])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(class_order=(0, 1, 1), initial_increment=1, increment=1), "repeats"),
        (dict(class_order=tuple(range(10)), initial_increment=3, increment=3), "remainder"),
        (dict(class_order=tuple(range(10)), initial_increment=0, increment=2), "initial_increment"),
        (dict(class_order=tuple(range(10)), initial_increment=2, increment=0), "increment"),
    ],
)
def test_bad_scenarios_fail_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Scenario(**kwargs)


def test_bad_split_and_task_index():
    with pytest.raises(ValueError, match="equal tasks"):
        Scenario.equal_split(range(10), 3)
    with pytest.raises(IndexError, match="out of range"):
        Scenario.equal_split(range(10), 5).task_classes(5)
    with pytest.raises(ValueError, match="not found"):
        load_class_order("cifar1000")
