"""The processes of a run, as the Trainer sees them: one by default.

A data-parallel run (xpnet.parallel.mpi) hands the Trainer a communicator with the same three
members; training itself never imports MPI.
"""

from __future__ import annotations


class SingleProcess:
    """A run in one process: rank 0 of 1, and every reduction is the identity."""

    rank = 0
    size = 1

    def sum(self, values: list) -> list:
        """Each of `values` (host numbers) added up over all processes."""
        return list(values)

    def describe(self) -> str:
        return "one process"
