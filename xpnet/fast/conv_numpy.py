"""NumPy's convolution block: Convolution → ReLU (→ 2×2 max pooling) as one step, split by samples.

One truth, written twice: the layers (xpnet.nn.conv, xpnet.nn.layers.ReLU, xpnet.nn.pooling) are
the book's math and the reference; this writes the same forward and backward pass again for
NumPy, and tests/test_fast_conv.py compares the two on every shape it handles, bit for bit.

What it does differently, none of which changes a number:

- ReLU after pooling. max and ReLU commute (max_k relu(x_k) = relu(max_k x_k), exactly), so ReLU
  runs on the pooled values, a quarter of the convolution's output, and its mask is the pooled
  output's sign. Backward sends each gradient to the window's first maximum (row-major, as the
  layer and torch), where ReLU's mask comes from the same maximum.
- The window's winner is found in forward, as two strict comparisons (is the second column of a
  row greater than the first? is the second row's maximum greater than the first row's?), kept as
  0/1 in the array's dtype. Backward then splits the gradient with multiplies and subtractions:
  g·f and g − g·f are g and 0 (or 0 and g) exactly.
- The patch matrix, the product and the pooling run on each worker thread for its own range of
  samples; the weight gradient is one product split by rows of the patch matrix (each entry
  still one dot product over all samples, in the same order).
- The scratch arrays of a training batch are kept from one step to the next.
"""

from __future__ import annotations

import numpy as np

from ..nn.patches import output_size, pair


class ConvBlock:
    """Convolution → ReLU, or Convolution → ReLU → 2×2 max pooling (stride 2, no padding), on NumPy.

    Reads the weights from the layer at every call and leaves dW and db in it (new arrays, as the
    layer's backward does). ``forward(x, train)`` returns the block's output (pooled: an NCHW array;
    else the layers' channel-last view); ``backward(dh, input_grad)`` returns dL/dx or None.
    """

    def __init__(self, conv, pool: bool, workers):
        self.conv = conv
        self.pool = pool
        self.workers = workers
        self._buffers: dict = {}
        self._saved: dict | None = None

    # -- shapes and scratch arrays ------------------------------------------------------------

    def _geometry(self, x) -> dict:
        FN, C, FH, FW = self.conv.W.shape
        N, _, H, W = x.shape
        sh, sw = pair(self.conv.stride, "stride")
        p = self.conv.pad
        OH, OW = output_size(H, FH, sh, p), output_size(W, FW, sw, p)
        g = dict(N=N, C=C, H=H, W=W, FN=FN, FH=FH, FW=FW, sh=sh, sw=sw, p=p, OH=OH, OW=OW)
        g.update(K=C * FH * FW, P=OH * OW, PH=OH // 2, PW=OW // 2)
        return g

    def _arrays(self, g: dict, dtype, train: bool) -> dict:
        """Scratch arrays for one batch: kept per shape for training batches, fresh otherwise."""
        key = (g["N"], g["C"], g["H"], g["W"], np.dtype(dtype).str)
        if train and key in self._buffers:
            return self._buffers[key]
        N, FN, K, P, PH, PW = g["N"], g["FN"], g["K"], g["P"], g["PH"], g["PW"]
        a = {
            "colT": np.empty((K + 1, N * P), dtype),
            "out": np.empty((N * P, FN), dtype),
        }
        if g["p"]:
            # the padding stays zero: each step writes only the inside
            a["xpad"] = np.zeros((N, g["C"], g["H"] + 2 * g["p"], g["W"] + 2 * g["p"]), dtype)
        if self.pool:
            a["rows"] = np.empty((N, 2 * PH, PW, FN), dtype)  # each row's maximum of its pair
            a["m"] = np.empty((N, PH, PW, FN), dtype)
            a["h"] = np.empty((N, FN, PH, PW), dtype)
            if train:
                a["right"] = np.empty((N, 2 * PH, PW, FN), dtype)  # 1: the right one wins
                a["lower"] = np.empty((N, PH, PW, FN), dtype)  # 1: the lower row wins
                a["g"] = np.empty((N, PH, PW, FN), dtype)
                a["g_lower"] = np.empty((N, PH, PW, FN), dtype)
                a["v"] = np.empty((N, PH, PW, FN), dtype)
                # zeros: rows and columns that no window covers get no gradient
                a["d"] = np.zeros((N * P, FN), dtype)
        elif train:
            a["d"] = np.empty((N * P, FN), dtype)
        if train:
            self._buffers = {key: a}  # one training shape at a time: the last one
        return a

    def _parts(self, g: dict, dtype) -> list:
        """Ranges of samples, one per worker thread: as many as keep the product's pieces large
        and start them at whole tiles of rows (threads.MIN_PIECE, threads.row_quantum: then
        they round as the whole product does)."""
        return self.workers.parts(g["N"], g["N"] * g["P"] * (g["K"] + 1) * g["FN"], dtype, g["P"])

    # -- forward ------------------------------------------------------------------------------

    def forward(self, x, train: bool = True):
        conv = self.conv
        g = self._geometry(x)
        a = self._arrays(g, x.dtype, train)
        FN, K = g["FN"], g["K"]
        col_W = conv.W.reshape(FN, K)
        Wb = np.concatenate([col_W.T, conv.b.reshape(1, FN)], axis=0)  # (K + 1, FN), as the layer
        parts = self._parts(g, x.dtype)
        self.workers.run(lambda r: self._forward_part(x, g, a, Wb, r, train), parts)
        if train:
            self._saved = {"g": g, "a": a, "col_W": col_W, "parts": parts}
        if self.pool:
            return a["h"]
        out = a["out"].reshape(g["N"], g["OH"], g["OW"], FN)
        return out.transpose(0, 3, 1, 2)

    def _forward_part(self, x, g, a, Wb, part, train) -> None:
        lo, hi = part
        P, K, p = g["P"], g["K"], g["p"]
        colT, out = a["colT"], a["out"]
        if p:
            xpad = a["xpad"]
            xpad[lo:hi, :, p : p + g["H"], p : p + g["W"]] = x[lo:hi]
            src = xpad[lo:hi].transpose(1, 0, 2, 3)
        else:
            src = x[lo:hi].transpose(1, 0, 2, 3)
        OH, OW, sh, sw = g["OH"], g["OW"], g["sh"], g["sw"]
        blocks = colT[:K].reshape(g["C"], g["FH"], g["FW"], g["N"], OH, OW)[:, :, :, lo:hi]
        for i in range(g["FH"]):
            for j in range(g["FW"]):
                blocks[:, i, j] = src[
                    :, :, i : i + sh * (OH - 1) + 1 : sh, j : j + sw * (OW - 1) + 1 : sw
                ]
        colT[K, lo * P : hi * P] = 1.0
        o = out[lo * P : hi * P]
        np.matmul(colT[:, lo * P : hi * P].T, Wb, out=o)  # BLAS reads the transpose in place
        if not self.pool:
            np.maximum(o, 0, out=o)  # NaN stays NaN, as in the layer
            return
        PH, PW = g["PH"], g["PW"]
        o = o.reshape(hi - lo, OH, OW, g["FN"])[:, : 2 * PH, : 2 * PW]
        rows = a["rows"][lo:hi]
        left, right = o[:, :, 0::2], o[:, :, 1::2]
        np.maximum(left, right, out=rows)
        if train:
            np.greater(right, left, out=a["right"][lo:hi])
        top, bottom = rows[:, 0::2], rows[:, 1::2]
        m = np.maximum(top, bottom, out=a["m"][lo:hi])
        if train:
            np.greater(bottom, top, out=a["lower"][lo:hi])
        np.maximum(m.transpose(0, 3, 1, 2), 0, out=a["h"][lo:hi])  # ReLU, into NCHW order

    # -- backward -----------------------------------------------------------------------------

    def backward(self, dh, input_grad: bool = True):
        conv, s = self.conv, self._saved
        g, a = s["g"], s["a"]
        N, FN, K = g["N"], g["FN"], g["K"]
        if dh.ndim == 2:
            dh = (
                dh.reshape(N, FN, g["PH"], g["PW"])
                if self.pool
                else dh.reshape(N, FN, g["OH"], g["OW"])
            )
        parts = s["parts"]
        self.workers.run(lambda r: self._backward_part(dh, g, a, r), parts)
        d = a["d"]
        # [dWᵀ; db] = colᵀ·d, split by rows of colᵀ: each entry one dot product over all samples
        grad = np.empty((K + 1, FN), dh.dtype)
        self.workers.run(
            lambda r: np.matmul(a["colT"][r[0] : r[1]], d, out=grad[r[0] : r[1]]),
            self.workers.parts(K + 1, (K + 1) * N * g["P"] * FN, dh.dtype),
        )
        conv.dW = np.ascontiguousarray(grad[:-1].T).reshape(conv.W.shape)
        conv.db = grad[-1].copy()
        if not input_grad:
            return None
        # dcolᵀ = Wᵀ·dᵀ split by its rows, a range of channels each, and col2im of each range into
        # its channels of img: a split by samples would split BLAS's tiles of columns, which
        # round differently (threads.row_quantum)
        p, FH, FW = g["p"], g["FH"], g["FW"]
        img = np.zeros((g["C"], N, g["H"] + 2 * p, g["W"] + 2 * p), dh.dtype)
        self.workers.run(
            lambda r: self._input_grad_part(g, d, s["col_W"].T, img, r),
            self.workers.parts(g["C"], K * N * g["P"] * FN, dh.dtype, FH * FW),
        )
        return img.transpose(1, 0, 2, 3)[:, :, p : p + g["H"], p : p + g["W"]]

    def _backward_part(self, dh, g, a, part) -> None:
        lo, hi = part
        P, FN, OH, OW = g["P"], g["FN"], g["OH"], g["OW"]
        d = a["d"][lo * P : hi * P]
        if not self.pool:  # ReLU's mask from its output, in the convolution's channel-last order
            h = a["out"][lo * P : hi * P].reshape(hi - lo, OH, OW, FN)
            np.multiply(
                dh[lo:hi],
                h.transpose(0, 3, 1, 2) > 0,
                out=d.reshape(hi - lo, OH, OW, FN).transpose(0, 3, 1, 2),
            )
            return
        PH, PW = g["PH"], g["PW"]
        grad = a["g"][lo:hi]
        np.multiply(dh[lo:hi], a["h"][lo:hi] > 0, out=grad.transpose(0, 3, 1, 2))
        lower = np.multiply(grad, a["lower"][lo:hi], out=a["g_lower"][lo:hi])
        upper = np.subtract(grad, lower, out=grad)
        d = d.reshape(hi - lo, OH, OW, FN)
        right_wins, v = a["right"][lo:hi], a["v"][lo:hi]
        for i, gi in ((0, upper), (1, lower)):
            # computed in order, then copied into place: NumPy copies into every other run of
            # FN values faster than it computes into them
            np.multiply(gi, right_wins[:, i::2], out=v)
            d[:, i : 2 * PH : 2, 1 : 2 * PW : 2] = v
            np.subtract(gi, v, out=v)
            d[:, i : 2 * PH : 2, 0 : 2 * PW : 2] = v

    def _input_grad_part(self, g, d, col_WT, img, part) -> None:
        """dcolᵀ = Wᵀ·dᵀ for this range of channels, and its col2im into them in img (C, N, H, W)."""
        lo, hi = part
        FH, FW, OH, OW, sh, sw = g["FH"], g["FW"], g["OH"], g["OW"], g["sh"], g["sw"]
        dcolT = (col_WT[lo * FH * FW : hi * FH * FW] @ d.T).reshape(hi - lo, FH, FW, g["N"], OH, OW)
        for i in range(FH):
            rows = slice(i, i + sh * (OH - 1) + 1, sh)
            for j in range(FW):
                img[lo:hi, :, rows, j : j + sw * (OW - 1) + 1 : sw] += dcolT[:, i, j]
