"""The stateful kernels resume from a saved state to the bit, and only expressions whose running sums can
resume are extended (qtrack.features.kernels, engine.check_extendable)."""

from __future__ import annotations

import numpy as np
import pytest

from qtrack.features import kernels
from qtrack.features.engine import check_extendable
from qtrack.features.expressions import NotExtendable, parse

STOCKS, DAYS, WINDOW, CHECKPOINT, LOOK_BACK = 40, 300, 10, 260, 12
KERNELS = {
    "mean": (kernels.roll_mean, ()),
    "sum": (kernels.roll_sum, ()),
    "var": (kernels.roll_var, ()),
    "slope": (kernels.roll_regression, (kernels.SLOPE,)),
    "rsquare": (kernels.roll_regression, (kernels.RSQUARE,)),
    "resi": (kernels.roll_regression, (kernels.RESI,)),
}


def panel() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(STOCKS, DAYS)).cumsum(axis=1) * 1e3
    values[rng.random((STOCKS, DAYS)) < 0.05] = np.nan
    values[3, 100:140] = 5.0  # a flat stretch: pandas' count of equal values is part of the state
    first = rng.integers(0, 250, STOCKS)
    first[:2] = (0, CHECKPOINT + 5)  # a series from day 0, and one that starts after the checkpoint
    return values, first


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_a_kernel_resumed_from_its_saved_state_equals_the_whole_run(name: str) -> None:
    kernel, extra = KERNELS[name]
    values, first = panel()
    saved = kernels.Carry(checkpoint=CHECKPOINT)
    whole = kernel(values, first, WINDOW, *extra, carry=saved)
    offset = CHECKPOINT + 1 - LOOK_BACK  # the tail panel starts here: the new days and the window's look-back
    tail_values, tail_first = np.ascontiguousarray(values[:, offset:]), np.maximum(first - offset, 0)
    resumed = kernel(tail_values, tail_first, WINDOW, *extra,
                     carry=kernels.Carry(resume_at=LOOK_BACK, state_in=saved.state_out))
    expected, got = whole[:, CHECKPOINT + 1 :], resumed[:, LOOK_BACK:]
    assert np.array_equal(expected.view(np.int64), got.view(np.int64))
    restarted = kernel(tail_values, tail_first, WINDOW, *extra)[:, LOOK_BACK:]  # the same days without the state
    assert not np.array_equal(expected.view(np.int64), restarted.view(np.int64))


def test_a_saved_state_of_the_wrong_shape_is_refused() -> None:
    values, first = panel()
    with pytest.raises(ValueError, match="saved kernel state"):
        kernels.roll_mean(values, first, WINDOW, carry=kernels.Carry(resume_at=5, state_in=np.zeros((2, 8))))


@pytest.mark.parametrize("expression", [
    "Mean($close, 5)/$close", "Corr($close, Log($volume+1), 10)", "Rsquare($close, 20)",
    "Std(Abs($close/Ref($close, 1)-1)*$volume, 5)", "Max(Ref($close, 1), 10)",
    "Ref($close, -2)/Ref($close, -1) - 1",
])
def test_expressions_whose_running_sums_sit_under_element_wise_operators_extend(expression: str) -> None:
    check_extendable(parse(expression))


@pytest.mark.parametrize("expression", [
    "Max(Mean($close, 5), 10)",  # the window needs the mean on days before the resume day
    "Ref(Std($close, 5), 1)",
    "Mean(Ref($close, -1), 5)",  # a running sum over a future day changes when that day arrives
])
def test_expressions_that_cannot_resume_are_rebuilt(expression: str) -> None:
    with pytest.raises(NotExtendable):
        check_extendable(parse(expression))


def test_gather_is_numpy_take_to_the_bit():
    """The feature columns are gathered from the stock-major panel on every core: the float32 values (NaN, inf,
    overflow, subnormals) are numpy's, and a column of the frame's F-ordered array is written in place."""
    rng = np.random.default_rng(7)
    values = rng.normal(size=(STOCKS, DAYS)) * 10.0 ** rng.integers(-50, 50, (STOCKS, DAYS))
    values[rng.random((STOCKS, DAYS)) < 0.05] = np.nan
    values[0, :6] = [np.inf, -np.inf, 1e300, -1e-300, 3.5e38, 1e-42]
    rows = rng.random((STOCKS, DAYS)) < 0.9
    day, stock = np.nonzero(rows.T)  # datetime-major output rows, as the loader orders them
    cells = stock * DAYS + day
    ours = np.zeros((cells.size, 3), dtype=np.float32, order="F")
    kernels.gather(values.ravel(), cells, ours[:, 1])
    with np.errstate(over="ignore"):
        theirs = np.take(values.ravel(), cells).astype(np.float32)
    np.testing.assert_array_equal(ours[:, 1].view(np.uint32), theirs.view(np.uint32))
    assert not ours[:, [0, 2]].any()
