#!/usr/bin/env python
"""The mutation score per module from mutmut's results, and the mutants that survived.

Reads the ``*.py.meta`` files that ``mutmut run`` (3.x) leaves under ``mutants/`` (one per mutated
module: an exit code per mutant) and prints a table: per module the mutants, how many the tests
killed, how many survived or reached no test, and the score killed / checked, where a mutant
that timed out counts as killed (it changed the code's behaviour) and one never checked (a run
stopped early, or limited to other modules) is left out. Then each survivor by name; with
``--diff`` (run from the project root, with mutmut installed) also the changed line.

    python scripts/mutation_report.py [mutants] [--diff] [--min-total 0.95] [--min-module 0.90]

Exit status 1 when a score is under its --min-* threshold, so a session can enforce them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# mutmut 3.8's exit codes (mutmut.stats.status_by_exit_code); anything else is "suspicious"
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    2: "interrupted",
    None: "not checked",
    34: "skipped",
    35: "suspicious",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "type check",
    -11: "segfault",
    -9: "segfault",
}
KILLED = {"killed", "timeout", "type check", "segfault"}
UNCOUNTED = {"not checked", "skipped", "interrupted"}


def load(mutants: Path) -> dict[str, dict[str, str]]:
    """{module path: {mutant name: status}} from every meta file under `mutants`."""
    modules = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        module = meta.relative_to(mutants).as_posix().removesuffix(".meta")
        modules[module] = {name: STATUS.get(code, "suspicious") for name, code in codes.items()}
    return modules


def score(statuses) -> tuple[int, int, float | None]:
    """(killed, checked, killed / checked or None when nothing was checked)."""
    checked = [s for s in statuses if s not in UNCOUNTED]
    killed = sum(s in KILLED for s in checked)
    return killed, len(checked), (killed / len(checked) if checked else None)


def table(modules: dict[str, dict[str, str]]) -> str:
    head = f"{'module':<28} {'mutants':>7} {'killed':>6} {'survived':>8} {'no tests':>8} {'other':>5} {'score':>6}"
    lines = [head, "-" * len(head)]

    def row(name, statuses):
        statuses = list(statuses)
        killed, _, value = score(statuses)
        survived = statuses.count("survived")
        no_tests = statuses.count("no tests")
        other = len(statuses) - killed - survived - no_tests
        shown = "-" if value is None else f"{value:.3f}"
        return f"{name:<28} {len(statuses):>7} {killed:>6} {survived:>8} {no_tests:>8} {other:>5} {shown:>6}"

    for module, mutants in modules.items():
        lines.append(row(module, mutants.values()))
    lines.append("-" * len(head))
    lines.append(row("all", [s for m in modules.values() for s in m.values()]))
    return "\n".join(lines)


def changed_lines(name: str, path: str) -> list[str]:
    """The removed and added lines of mutant `name`'s diff (needs mutmut and the project root)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(name, path=path)
    return [
        line
        for line in diff.splitlines()
        if line[:1] in "-+" and not line.startswith(("---", "+++"))
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mutants", nargs="?", default="mutants", type=Path)
    parser.add_argument("--diff", action="store_true", help="show each survivor's changed line")
    parser.add_argument("--min-total", type=float, default=0.0, help="lowest score of all modules")
    parser.add_argument("--min-module", type=float, default=0.0, help="lowest score of each")
    args = parser.parse_args(argv)
    modules = load(args.mutants)
    if not modules:
        print(f"no mutmut results under {args.mutants}/: run `nox -s mutation` first")
        return 1
    print(table(modules))
    for module, mutants in modules.items():
        left = [n for n, s in mutants.items() if s not in KILLED | UNCOUNTED]
        if not left:
            continue
        print(f"\n{module}: {len(left)} not killed")
        for name in left:
            print(f"  {mutants[name]:<10} {name}")
            if args.diff:
                for line in changed_lines(name, module):
                    print(f"      {line.strip()}")
    low = [
        f"{module} {value:.3f} < {args.min_module}"
        for module, mutants in modules.items()
        if (value := score(mutants.values())[2]) is not None and value < args.min_module
    ]
    total = score([s for m in modules.values() for s in m.values()])[2]
    if total is not None and total < args.min_total:
        low.append(f"all {total:.3f} < {args.min_total}")
    for line in low:
        print(f"under the threshold: {line}")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
