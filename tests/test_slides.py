"""The numbers printed on the slides (and the book), reproduced exactly, on every backend."""

import numpy as np
import pytest
from conftest import assert_on

import xpnet
from xpnet import AND, NAND, OR, XOR
from xpnet.backend import to_numpy

TRUTH = {
    AND: [0, 0, 0, 1],
    NAND: [1, 1, 1, 0],
    OR: [0, 1, 1, 1],
    XOR: [0, 1, 1, 0],
}
INPUTS = [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize("gate", list(TRUTH), ids=lambda g: g.__name__)
def test_gate_truth_tables_on_python_numbers(gate):
    outputs = [gate(a, b) for a, b in INPUTS]
    assert outputs == TRUTH[gate]
    assert all(type(o) is int for o in outputs)


@pytest.mark.parametrize("gate", list(TRUTH), ids=lambda g: g.__name__)
def test_gate_truth_tables_elementwise_on_arrays(gate, backend):
    x1 = backend.asarray([a for a, _ in INPUTS], "float32")
    x2 = backend.asarray([b for _, b in INPUTS], "float32")
    y = gate(x1, x2)
    assert_on(y, backend, "int64", (4,))
    assert to_numpy(y).tolist() == TRUTH[gate]


def test_three_layer_network_prints_slides_output(backend):
    network = xpnet.init_network(backend)
    y = xpnet.forward(network, backend.asarray([1.0, 0.5], "float64"))
    assert_on(y, backend, "float64", (2,))
    # the slides print [0.67948244 0.7082739]
    np.testing.assert_allclose(to_numpy(y), [0.67948244, 0.7082739], rtol=0, atol=5e-9)
    assert np.array2string(to_numpy(y)) == "[0.67948244 0.7082739 ]"


def test_three_layer_network_with_book_weights():
    from xpnet.nn.three_layer import BOOK_WEIGHTS

    y = xpnet.forward(
        xpnet.init_network(weights=BOOK_WEIGHTS), np.array([1.0, 0.5]), xpnet.identity
    )
    np.testing.assert_allclose(y, [0.31682708, 0.69627909], atol=5e-9)


def test_three_layer_network_float32(backend):
    network = xpnet.init_network(backend, dtype="float32")
    y = xpnet.forward(network, backend.asarray([1.0, 0.5], "float32"))
    assert_on(y, backend, "float32", (2,))
    np.testing.assert_allclose(to_numpy(y), [0.67948244, 0.7082739], rtol=1e-6)


def test_softmax_prints_slides_output(backend):
    for dtype, tol in (("float64", 5e-9), ("float32", 1e-7)):
        y = xpnet.softmax(backend.asarray([2.2, 0.4, 0.7], dtype))
        assert_on(y, backend, dtype, (3,))
        np.testing.assert_allclose(to_numpy(y), [0.72023846, 0.11905462, 0.16070692], atol=tol)


def test_activation_values(backend):
    x = backend.asarray([-1.0, 0.0, 1.0, 2.0], "float32")
    np.testing.assert_array_equal(to_numpy(xpnet.step_function(x)), [0, 0, 1, 1])
    np.testing.assert_array_equal(to_numpy(xpnet.relu(x)), [0, 0, 1, 2])
    # the book: sigmoid([-1, 1, 2]) = [0.26894142 0.73105858 0.88079708]
    np.testing.assert_allclose(
        to_numpy(xpnet.sigmoid(x)), [0.26894142, 0.5, 0.73105858, 0.88079708], atol=1e-7
    )
    for f in (xpnet.step_function, xpnet.relu, xpnet.sigmoid):
        assert_on(f(x), backend, "float32", (4,))


def test_cross_entropy_book_examples(backend):
    # the book, section 4.2.2: the label is class 2
    y1 = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
    y2 = [0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0]
    t = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    for y, expected in ((y1, 0.510825457099338), (y2, 2.302584092994546)):
        loss = xpnet.cross_entropy_error(
            backend.asarray(y, "float64"), backend.asarray(t, "float64")
        )
        assert_on(loss, backend, "float64", ())
        assert float(loss) == pytest.approx(expected, rel=1e-12)
        label = backend.asarray(2, "int64")
        assert float(
            xpnet.cross_entropy_error(backend.asarray(y, "float64"), label)
        ) == pytest.approx(expected, rel=1e-12)
