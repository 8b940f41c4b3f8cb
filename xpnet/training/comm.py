"""The processes of a run, as the Trainer sees them: one by default.

A data-parallel run (xpnet.parallel.mpi) hands the Trainer a communicator with the same members;
training itself never imports MPI. Every member is collective there: all processes call it at
the same point, or none does.
"""

from __future__ import annotations


class SingleProcess:
    """A run in one process: rank 0 of 1, and every reduction is the identity."""

    rank = 0
    size = 1

    def sum(self, values: list) -> list:
        """Each of `values` (host numbers) added up over all processes."""
        return list(values)

    def any(self, flag: bool) -> bool:
        """True when `flag` is true in any process (a decision every process takes alike)."""
        return bool(flag)

    def describe(self) -> str:
        return "one process"
