import pytest
import torch

from nscl.data import Scenario
from nscl.data.base import TensorImageSet
from nscl.data.benchmarks import BENCHMARKS, load_benchmark
from nscl.data.domains import CASTS, STRIPES, stripe_pattern, task_cast, task_stripes, with_task_domains
from nscl.data.protocols import TINY_FAMILIES, TINY_SHAPES, tiny_benchmark_id


def test_stripe_patterns_by_hand():
    assert stripe_pattern(1, 0, 2, 4).tolist() == [[-1] * 4, [-1] * 4, [1] * 4, [1] * 4]  # rows: i // 2 % 2
    assert stripe_pattern(0, 1, 3, 4).tolist() == [[1, 1, -1, -1]] * 4  # columns: (j + 16) // 3 % 2 = 1, 1, 0, 0
    diagonal = stripe_pattern(1, 1, 2, 4)
    assert all(diagonal[i, j] == diagonal[j, i] for i in range(4) for j in range(4))


def test_every_task_of_sixteen_has_its_own_texture():
    patterns = torch.stack([task_stripes(k, 32).flatten().double() for k in range(len(STRIPES))])
    assert len(set(STRIPES)) == 16 and torch.linalg.matrix_rank(patterns) == 16
    assert torch.equal(task_stripes(16, 32), task_stripes(0, 32))  # longer protocols cycle
    assert len(set(CASTS)) == 8 and torch.equal(task_cast(8), task_cast(0))
    looks = {(STRIPES[k % 16], CASTS[k % 8]) for k in range(25)}
    assert len(looks) == 16  # 25 tasks: k and k + 16 share a look


def toy_set():
    images = torch.full((6, 3, 8, 8), 100, dtype=torch.uint8)
    images[5] = 250  # near white: the sum must clip, not wrap around
    return TensorImageSet("toy", images, torch.tensor([0, 1, 2, 3, 4, 4]), tuple("abcde"))


def test_each_image_carries_its_tasks_pattern_and_nothing_wraps():
    scenario = Scenario((3, 1, 0, 2), 2, 2)  # task 0: classes 3, 1; task 1: classes 0, 2; class 4 in no task
    out = with_task_domains(toy_set(), scenario, amplitude=40, cast=20)
    assert out.name == "toy-domains" and torch.equal(out.targets, toy_set().targets)
    for index, task in [(0, 1), (1, 0), (2, 1), (3, 0)]:
        expected = 100 + 40 * task_stripes(task, 8) + 20 * task_cast(task)[:, None, None]
        assert torch.equal(out.images[index], expected.to(torch.uint8))
    assert torch.equal(out.images[4], toy_set().images[4])  # no task: unchanged
    assert torch.equal(out.images[5], toy_set().images[5])  # class 4 again (250 would clip at 255)


def test_clipping_at_white():
    data = toy_set()
    scenario = Scenario((4,), 1, 1)
    out = with_task_domains(data, scenario, amplitude=40, cast=0)
    assert out.images[5].max() == 255 and out.images[5].min() == 210


@pytest.mark.parametrize("name,value", [("amplitude", 128), ("amplitude", -3), ("cast", 200)])
def test_bad_amplitude_is_named(name, value):
    with pytest.raises(ValueError, match=f"{name}={value}: expected an integer in 0..127"):
        with_task_domains(toy_set(), Scenario((0, 1), 1, 1), **{name: value})


def test_the_domains_family_is_a_benchmark_of_every_tiny_shape():
    assert TINY_FAMILIES == ("grey", "tinted", "domains")
    for shape in TINY_SHAPES:
        bench = BENCHMARKS[tiny_benchmark_id(shape, "domains")]
        assert bench.id == f"shapes100-domains-{shape}" and bench.dataset == "shapes100"
    with pytest.raises(ValueError, match="background='striped'"):
        tiny_benchmark_id("10s", "striped")


def test_domains_benchmark_is_the_grey_one_plus_each_tasks_texture():
    grey = load_benchmark("shapes100-10s", shapes_train_per_class=4, shapes_test_per_class=2)
    domains = load_benchmark("shapes100-domains-10s", shapes_train_per_class=4, shapes_test_per_class=2)
    assert domains.scenario == grey.scenario
    for task in (0, 3, 9):
        for split in ("train", "test"):
            a, b = grey.task(task, split), domains.task(task, split)
            assert torch.equal(a.targets, b.targets)
            shift = b.images.to(torch.int16) - a.images.to(torch.int16)
            pattern = 40 * task_stripes(task, 32) + 48 * task_cast(task)[:, None, None]
            unclipped = (a.images.to(torch.int16) >= 88) & (a.images.to(torch.int16) <= 167)
            assert torch.equal(shift[unclipped], pattern.expand_as(shift)[unclipped])
