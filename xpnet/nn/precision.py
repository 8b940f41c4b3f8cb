"""Chapter 8's bit-precision experiment: numbers rounded to a 16-bit floating format.

The book rounds a trained DeepConvNet's weights and the test images to float16 and finds the
test accuracy unchanged: a network needs far fewer bits than float64 to work. ``round_to`` gives
the value that a number stored in a 16-bit format would have, kept in the array's own dtype, so
the arithmetic itself stays in the network's dtype (as in the book, where float16 inputs meet
float64 weights and NumPy computes in float64) on every backend, including those without
16-bit types.

Formats: ``float16`` (IEEE half: 11 significant bits, largest finite 65504, smallest normal
2⁻¹⁴) and ``bfloat16`` (8 significant bits with float32's exponent range, the format of
tensor-core training). Both round to nearest, ties to even; NaN stays NaN, and values beyond
the largest finite number become ±inf. The rounding runs on the host, in NumPy, where the weights
and data are loaded.
"""

from __future__ import annotations

import numpy as np

from ..errors import choose

#: the formats round_to knows
FORMATS = ("float16", "bfloat16")


def round_to(a, fmt: str) -> np.ndarray:
    """The values of host array `a` rounded to the nearest `fmt` number, in a's floating dtype.

    float64 values are rounded to float32 first on the way to bfloat16: in a halfway case that
    can differ from rounding once by one unit in bfloat16's last place.
    """
    choose("precision", fmt, FORMATS)
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"round_to needs a floating array, got dtype {a.dtype}")
    # beyond the format's largest number becomes ±inf, as a cast to it does: no warning
    with np.errstate(over="ignore"):
        if fmt == "float16":
            return a.astype(np.float16).astype(a.dtype)
        single = np.ascontiguousarray(a, dtype=np.float32)
    bits = single.view(np.uint32)
    # add half a unit of the kept 16 bits, plus one when the kept part is odd (ties to even);
    # a carry into the exponent is the correct rounding up, to inf at the top of the range
    lsb = (bits >> np.uint32(16)) & np.uint32(1)
    rounded = (bits + (np.uint32(0x7FFF) + lsb)) & np.uint32(0xFFFF0000)
    out = np.where(np.isnan(single), single, rounded.view(np.float32))  # a NaN could carry into inf
    return out.astype(a.dtype)
