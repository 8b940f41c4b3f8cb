"""Test sessions, one per array backend; the lowest versions; MPI; mutation testing; lint; the docs.

`nox -l` lists them.
"""

import os
import re
import shutil
from pathlib import Path

import nox
import tomllib

nox.options.sessions = ["lint", "tests(backend='numpy')", "tests(backend='array_api_strict')"]
nox.options.reuse_existing_virtualenvs = True

# backend -> the ids of tests/conftest.py's backend parametrization that the session runs
BACKENDS = {
    "numpy": "numpy",
    "array_api_strict": "strict,strict-device1",
    "torch": "torch-cpu,torch-cuda",
    "cupy": "cupy",
}


def _has_nvidia_gpu() -> bool:
    return (
        shutil.which("nvidia-smi") is not None and os.system("nvidia-smi -L >/dev/null 2>&1") == 0
    )


@nox.session
@nox.parametrize("backend", list(BACKENDS))
def tests(session: nox.Session, backend: str) -> None:
    """Run the test suite with the backend-parametrized tests restricted to one backend."""
    if backend == "cupy" and not _has_nvidia_gpu():
        session.skip("no NVIDIA GPU visible (nvidia-smi -L failed): the CuPy tests need one")
    session.install("-e", ".[test]")
    if backend == "torch":
        session.install("torch==2.13.0")
    if backend == "cupy":
        # cupy-cuda12x by default; XPNET_CUPY=cupy-cuda13x for a CUDA 13 driver
        session.install(os.environ.get("XPNET_CUPY", "cupy-cuda12x"))
    env = {"XPNET_TEST_BACKENDS": BACKENDS[backend]}
    # XPNET_DATA_DIR: where the real-MNIST tests find it (XPNET_MNIST_DIR: its former name)
    for var in ("XPNET_DATA_DIR", "XPNET_MNIST_DIR"):
        if var in os.environ:
            env[var] = os.environ[var]
    session.run("pytest", *session.posargs, env=env)


@nox.session
def mpi(session: nox.Session) -> None:
    """The data-parallel tests with real MPI processes (mpi4py and the mpich wheel's mpiexec)."""
    session.install("-e", ".[test,mpi]")  # with torch installed too, its cases run as well
    session.run("pytest", "tests/test_mpi.py", *session.posargs)


# The test extra's tools for the docs and notebooks, not libraries xpnet's code uses: the minimum
# session leaves them out (their floors say nothing about xpnet), and those tests skip there.
TOOLS = {"mkdocs", "mkdocs-material", "mkdocstrings[python]", "nbclient", "nbformat", "ipykernel"}


def minimum_versions() -> list[str]:
    """The lowest versions pyproject.toml declares (its dependencies and the test extra), pinned."""
    project = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    pins = []
    for requirement in declared:
        match = re.fullmatch(r"([A-Za-z0-9_.\[\]-]+)>=([0-9.]+)", requirement.replace(" ", ""))
        if match is None:
            raise ValueError(f"cannot pin {requirement!r}: write floors as NAME>=VERSION")
        if match[1] not in TOOLS:
            pins.append(f"{match[1]}=={match[2]}")
    return pins


@nox.session
def minimum(session: nox.Session) -> None:
    """The suite (numpy and array_api_strict) on the lowest versions pyproject.toml declares."""
    # matplotlib 3.8 calls pyparsing's old camelCase names, which pyparsing 3.3 deprecates (an
    # error under filterwarnings=error): pair the oldest matplotlib with a pyparsing of its time
    session.install(*minimum_versions(), "pyparsing<3.3")
    session.install("--no-deps", "-e", ".")
    session.run("pip", "list")
    env = {"XPNET_TEST_BACKENDS": "numpy,strict,strict-device1"}
    session.run("pytest", *session.posargs, env=env)


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing of the book's math (xpnet/nn) with mutmut, on NumPy and without torch.

    `nox -s mutation` starts afresh and prints the score per module and the survivors;
    `nox -s mutation -- "xpnet.nn.optimizers.*"` re-tests one module's mutants (mutmut's globs),
    keeping the other results, with the map of which tests call which function that the last
    whole run made (after changing tests, run it whole). [tool.mutmut] in pyproject.toml says
    what is mutated and which tests run; docs/mutation.md has the scores.
    """
    project = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text())["project"]
    # xpnet itself is not installed: mutmut's copy of it under mutants/ must be the one imported.
    # array_api_strict runs the Array API code that NumPy never takes (the tests say which);
    # mutmut 3.8 reads pytest items' _nodeid, which pytest 9.2 no longer has.
    session.install(
        *project["dependencies"], "array-api-strict>=2.3", "pytest>=8,<9.2", "mutmut==3.8"
    )
    session.run(
        "python", "-c",
        "import importlib.util, sys; "
        "sys.exit('torch is installed here: the run must measure the suite without it' "
        "if importlib.util.find_spec('torch') else 0)",
    )  # fmt: skip
    if not session.posargs:
        shutil.rmtree("mutants", ignore_errors=True)
    env = {"XPNET_TEST_BACKENDS": "numpy", "XPNET_DATA_DIR": "", "XPNET_MNIST_DIR": ""}
    session.run("mutmut", "run", *session.posargs, env=env)
    # the table, each survivor's changed line, and a failure under 0.95 in all or 0.90 in a module
    report = ["mutants", "--diff", "--min-total", "0.95", "--min-module", "0.90"]
    session.run("python", "scripts/mutation_report.py", *report)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and the layers contract (import-linter, pyproject.toml)."""
    session.install("ruff>=0.6", "import-linter>=2.1")
    session.install("--no-deps", "-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session
def docs(session: nox.Session) -> None:
    """The docs site (mkdocs.yml) with every warning an error; `nox -s docs -- serve` serves it."""
    session.install("-e", ".[docs]")
    env = {"NO_MKDOCS_2_WARNING": "1"}
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:], env=env)
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs, env=env)
