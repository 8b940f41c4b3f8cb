"""The README and the docs run: every code block, every command, the site build, so none can drift.

- A Python block starting with `>>>` is a doctest (its output is checked); any other Python block
  runs as written in a temporary folder. A block that calls `load_mnist` also runs on a small
  stand-in of MNIST's shape built from the offline digits, and on MNIST itself when the tests have it.
- Each command of a bash block runs in a temporary folder shared by its page's blocks, in order,
  with XPNET_DATA_DIR naming MNIST when the tests have it and an empty folder otherwise (nothing is
  ever downloaded). `xpnet` commands and scripts run as subprocesses of this Python, `mpiexec`
  before one with two real processes when mpi4py and mpiexec are installed; `pip install` is
  checked against pyproject's extras, `nox` against noxfile's sessions; the rest is listed in
  NOT_RUN with the reason.
- An HTML comment before a block says how to run it when not as written (docs/development.md has
  the table): `replace "OLD" "NEW"` shortens, `mnist` needs MNIST, `parse-only "REASON"` and
  `parse-only-matching "TEXT" "REASON"` only parse the arguments with the command's own parser,
  `exit N` expects that status, `needs TOOL` runs when TOOL is installed, `skip "REASON"`.
- `xpnet` commands in inline code are parsed by their parsers; the README's links must resolve.
- `mkdocs build --strict` builds the site (broken links and docstrings are errors).
"""

from __future__ import annotations

import argparse
import contextlib
import doctest
import importlib
import importlib.util
import inspect
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from conftest import mnist_dir
from threadpoolctl import threadpool_limits

import xpnet
from xpnet.apps.main import COMMANDS
from xpnet.backend import DeviceFallbackWarning
from xpnet.errors import XpnetError

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
COMMAND_TIMEOUT = 300  # seconds for one shortened command, on a busy 2-core machine

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
NOTE = re.compile(r"<!--\s*test:\s*(.*?)\s*-->")
DIRECTIVES = {
    "replace": 2, "mnist": 0, "parse-only": 1, "parse-only-matching": 2, "exit": 1, "needs": 1,
    "skip": 1,
}  # fmt: skip

# first word(s) of a command -> why it is not run (checked otherwise where said)
NOT_RUN = {
    "python3 -m venv": "makes a virtual environment: the tests run in one already",
    "python -m venv": "makes a virtual environment: the tests run in one already",
    "source": "activates a virtual environment",
    "pip install": "installs packages (its extras are checked against pyproject.toml)",
    "python -m pytest": "the test suite itself (its paths are checked)",
    "nox": "nox sessions install packages (the sessions named are checked against noxfile.py)",
    "mkdocs": "test_docs_site_builds runs mkdocs build --strict",
    "dask": "starts a Dask scheduler or worker of a cluster",
    "jupyter": "starts a Jupyter server (tests/test_notebooks.py runs the notebooks)",
    "tensorboard": "starts a TensorBoard server",
    "bash": "a shell script for another machine (checked with bash -n)",
    ".nox/mutation/bin/mutmut": "mutmut in the mutation session's environment, after a run of it",
}
#: what starts a command on several processes: its options come before the command it starts
LAUNCHERS = ("mpiexec", "srun")
#: the mpich wheel's mpiexec beside this Python (the mpi extra), else one on PATH
MPIEXEC = (
    str(Path(sys.executable).with_name("mpiexec"))
    if Path(sys.executable).with_name("mpiexec").exists()
    else shutil.which("mpiexec")
)
TOOLS = ("ruff", "lint-imports")  # run in the repository itself when installed


def rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    text: str
    notes: list[list[str]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{rel(self.page)}:{self.line}"

    def note(self, name: str) -> list[list[str]]:
        return [n[1:] for n in self.notes if n[0] == name]

    @property
    def shortened(self) -> str:
        text = self.text
        for old, new in self.note("replace"):
            assert old in text, f"{self.id}: `replace` names {old!r}, which the block lacks"
            text = text.replace(old, new)
        return text


def blocks_of(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].splitlines()
        notes = []
        while before and before[-1].strip().startswith("<!--"):
            found = NOTE.fullmatch(before.pop().strip())
            if found:
                notes.insert(0, shlex.split(found.group(1)))
        line = text.count("\n", 0, m.start()) + 1
        blocks.append(Block(page, line, m.group(1), m.group(2), notes))
    return blocks


BLOCKS = [b for page in PAGES for b in blocks_of(page)]
PYTHON = [b for b in BLOCKS if b.lang == "python"]
DOCTESTS = [b for b in PYTHON if b.text.lstrip().startswith(">>>")]
SCRIPTS = [b for b in PYTHON if b not in DOCTESTS]
NEEDS_MNIST = [b for b in SCRIPTS if "load_mnist" in b.text]
SHELL = [b for b in BLOCKS if b.lang in ("bash", "sh", "shell")]
ids = [b.id for b in BLOCKS]


def block_ids(blocks):
    return [b.id for b in blocks]


def test_every_block_has_a_known_language_and_known_notes():
    for b in BLOCKS:
        assert b.lang in ("python", "bash", "text", "diff", ""), (
            f"{b.id}: ```{b.lang} is neither run nor text"
        )
        for note in b.notes:
            assert note[0] in DIRECTIVES, f"{b.id}: unknown test directive {note[0]!r}"
            assert len(note) - 1 == DIRECTIVES[note[0]], (
                f"{b.id}: {note} takes {DIRECTIVES[note[0]]} arguments"
            )
    assert len(set(ids)) == len(ids)
    assert DOCTESTS and NEEDS_MNIST and len(SHELL) >= 10


# ---------------------------------------------------------------- Python blocks


@pytest.mark.parametrize("block", DOCTESTS, ids=block_ids(DOCTESTS))
def test_doctest_block(block):
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(verbose=False)
    test = parser.get_doctest(block.shortened, {}, block.id, str(block.page), block.line)
    out = io.StringIO()
    result = runner.run(test, out=out.write)
    assert result.attempted > 0 and result.failed == 0, out.getvalue()


def _exec(block: Block, tmp_path, monkeypatch, as_written=False):
    """Run a Python block in tmp_path (shortened as its notes say, unless `as_written`)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # a block may add to it
    source = block.text if as_written else block.shortened
    # one BLAS thread: on a busy machine several wait for each other; the results are the same
    with warnings.catch_warnings(), threadpool_limits(1):
        # `resolve("cuda")` without a GPU falls back to the CPU with a warning, as the pages say
        warnings.simplefilter("ignore", DeviceFallbackWarning)
        code = compile("\n" * block.line + source, str(block.page), "exec")
        exec(code, {"__name__": "__docs__"})


def _skip_if_noted(block: Block):
    for (reason,) in block.note("skip"):
        pytest.skip(f"{block.id}: {reason}")
    for (tool,) in block.note("needs"):
        if importlib.util.find_spec(tool) is None and shutil.which(tool) is None:
            pytest.skip(f"{block.id}: needs {tool}, which is not installed")


SCRIPTS_OFFLINE = [b for b in SCRIPTS if b not in NEEDS_MNIST]


@pytest.mark.parametrize("block", SCRIPTS_OFFLINE, ids=block_ids(SCRIPTS_OFFLINE))
def test_python_block_runs_as_written(block, tmp_path, monkeypatch):
    _skip_if_noted(block)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    _exec(block, tmp_path, monkeypatch)


def _mnist_stand_in(normalize=True, flatten=True, one_hot_label=False, data_dir=None):
    """load_mnist's interface and shapes, filled with the 8x8 digits padded to 28x28 (offline)."""
    from xpnet.data import load_dataset

    d = load_dataset("digits", progress=False)

    def images(x):
        x = np.asarray(x, dtype=np.float32).reshape(-1, 8, 8)
        padded = np.zeros((x.shape[0], 1, 28, 28), np.float32)
        padded[:, 0, 10:18, 10:18] = x
        return padded.reshape(x.shape[0], -1) if flatten else padded

    def labels(t):
        t = np.asarray(t)
        return np.eye(10, dtype=np.float32)[t] if one_hot_label else t

    return (images(d.x_train), labels(d.t_train)), (images(d.x_test), labels(d.t_test))


@pytest.mark.parametrize("block", NEEDS_MNIST, ids=block_ids(NEEDS_MNIST))
def test_mnist_block_runs_on_a_small_stand_in(block, tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn", reason="the offline digits dataset needs scikit-learn")
    monkeypatch.setattr(xpnet, "load_mnist", _mnist_stand_in)
    _exec(block, tmp_path, monkeypatch)
    printed = capsys.readouterr().out.splitlines()
    if "print(" in block.text:  # the slides' loop: its accuracies rise well above chance
        last = [float(v) for v in printed[-1].split()[1:]]
        assert len(printed) > 1 and min(last) > 0.5


@pytest.mark.parametrize("block", NEEDS_MNIST, ids=block_ids(NEEDS_MNIST))
def test_mnist_block_without_mnist_fails_with_one_clear_line(block, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(XpnetError) as exc_info:
        _exec(block, tmp_path, monkeypatch)
    message = str(exc_info.value)
    assert "\n" not in message and "MNIST" in message


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.skipif(
    mnist_dir() is None, reason="set XPNET_DATA_DIR to a folder with the MNIST files"
)
@pytest.mark.parametrize("block", NEEDS_MNIST, ids=block_ids(NEEDS_MNIST))
def test_mnist_block_on_real_mnist(block, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XPNET_DATA_DIR", str(mnist_dir()))
    _exec(block, tmp_path, monkeypatch, as_written=True)
    printed = capsys.readouterr().out.splitlines()
    if "print(" in block.text:  # the slides' ~95% after 10,000 iterations
        assert min(float(v) for v in printed[-1].split()[1:]) > 0.9


# ---------------------------------------------------------------- shell commands


@dataclass
class Command:
    env: dict[str, str]
    argv: list[str]

    def __str__(self):
        return " ".join([*(f"{k}={v}" for k, v in self.env.items()), *map(shlex.quote, self.argv)])

    def starts(self, *words: str) -> bool:
        return self.argv[: len(words)] == list(words)


def commands_of(text: str) -> list[Command]:
    """The commands of a bash block: one per line, `\\` continuations joined, `&&` and `;` split."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split, lexer.commenters = True, "#"
        parts, current = [], []
        for token in lexer:
            if token in ("&&", ";"):
                parts.append(current)
                current = []
            elif set(token) <= set(";&|<>"):
                raise AssertionError(
                    f"{line!r}: {token!r} is shell syntax the docs tests do not run"
                )
            else:
                current.append(token)
        parts.append(current)
        for tokens in filter(None, parts):
            env = {}
            while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):
                key, _, value = tokens.pop(0).partition("=")
                env[key] = value
            found.append(Command(env, tokens))
    return found


def launched(cmd: Command) -> tuple[list[str], Command] | None:
    """(the launcher's words, the command it starts) for `mpiexec ... python scripts/X.py ...`
    or `srun ... xpnet ...`; None for a command that is not started by a launcher."""
    if cmd.argv[0] not in LAUNCHERS:
        return None
    for i, word in enumerate(cmd.argv):
        if word in ("python", "python3", "xpnet"):
            return cmd.argv[:i], Command(cmd.env, cmd.argv[i:])
    raise AssertionError(f"`{cmd}`: the docs tests find no python or xpnet command after it")


def xpnet_target(cmd: Command) -> tuple[str, list[str]] | None:
    """(what runs the command, its arguments) for an xpnet command or a script, also when a
    launcher starts it: a module under xpnet.apps, or a script's path under scripts/; None for
    any other command."""
    if (inner := launched(cmd)) is not None:
        return xpnet_target(inner[1])
    argv = cmd.argv
    if argv[:1] == ["xpnet"] or argv[:3] in (["python", "-m", "xpnet"], ["python3", "-m", "xpnet"]):
        rest = argv[1:] if argv[0] == "xpnet" else argv[3:]
        if rest and rest[0] in COMMANDS:
            module = f"xpnet.apps.{COMMANDS[rest[0]][0]}"
            if (
                importlib.util.find_spec(module) is None
                and (ROOT / f"scripts/{rest[0]}.py").exists()
            ):
                # a command whose module has not moved under xpnet.apps yet: its script runs it
                return f"scripts/{rest[0]}.py", rest[1:]
            return module, rest[1:]
        return "xpnet.apps.main", rest
    if argv[0] in ("python", "python3") and len(argv) > 1 and argv[1].startswith("scripts/"):
        return argv[1], argv[2:]
    return None


def _script_main(path: str):
    """The main() a script under scripts/ runs: the module its launcher names, or its own."""
    source = (ROOT / path).read_text(encoding="utf-8")
    launched = re.search(r'launch\("([\w.]+)"\)', source)
    if launched:
        return importlib.import_module(launched.group(1)).main
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        spec = importlib.util.spec_from_file_location(f"_docs_{Path(path).stem}", ROOT / path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return module.main


class _Parsed(BaseException):
    """Raised by the patched parse_args once the arguments parsed: nothing after it runs."""


def parse_only(cmd: Command) -> None:
    """Parse the command's arguments with its own argparse parser, and run nothing."""
    target, args = xpnet_target(cmd)
    main = (
        _script_main(target)
        if target.startswith("scripts/")
        else importlib.import_module(target).main
    )
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    err = io.StringIO()
    takes_args = bool(inspect.signature(main).parameters)  # or it reads sys.argv itself
    with (
        mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args),
        mock.patch.object(sys, "argv", [target, *args]),
    ):
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                status = main(args) if takes_args else main()
            except _Parsed:
                return
            except SystemExit as exc:
                status = exc.code
    raise AssertionError(f"`{cmd}` does not parse (status {status}): {err.getvalue()[-2000:]}")


def pyproject_extras() -> set[str]:
    """The extras pyproject.toml declares (read by hand: tomllib is Python 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*=", section, re.M))


def check_pip(cmd: Command) -> None:
    extras = pyproject_extras()
    for arg in cmd.argv[2:]:
        m = re.fullmatch(r"\.\[([\w,-]+)\]", arg)
        if m:
            unknown = set(m.group(1).split(",")) - extras
            assert not unknown, f"`{cmd}` names extras {sorted(unknown)} that pyproject.toml lacks"


def check_nox(cmd: Command) -> None:
    source = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    sessions = set(re.findall(r"@nox\.session[^\n]*\n(?:@[^\n]*\n)*def (\w+)", source))
    params = dict(re.findall(r'@nox\.parametrize\("(\w+)", list\((\w+)\)\)', source))
    names = cmd.argv[cmd.argv.index("-s") + 1 :] if "-s" in cmd.argv else []
    names = names[: names.index("--")] if "--" in names else names  # then the session's own
    for name in names:
        m = re.fullmatch(r"(\w+)\((\w+)='(\w+)'\)", name)
        base = m.group(1) if m else name
        assert base in sessions, f"`{cmd}`: noxfile.py has no session {base!r}"
        if m:
            table = params.get(m.group(2))
            assert table and f'"{m.group(3)}"' in source, f"`{cmd}`: no {name} in noxfile.py"


def check_pytest(cmd: Command) -> None:
    for arg in cmd.argv[3:]:
        if arg.startswith("tests/"):
            assert (ROOT / arg).exists(), f"`{cmd}`: {arg} does not exist"


def not_run_reason(cmd: Command) -> str | None:
    for words, reason in NOT_RUN.items():
        if cmd.starts(*words.split()):
            return reason
    return None


class Workspace:
    """A page's temporary folder, where its blocks run in order (a later block may use an earlier
    block's run folder), with the environment every command of the docs tests gets."""

    def __init__(self, page: Path, base: Path, data_dir: Path):
        self.page, self.dir = page, base / rel(page).replace("/", "_")
        self.dir.mkdir()
        (self.dir / "scripts").symlink_to(ROOT / "scripts")
        self.env = dict(os.environ)
        self.env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            XPNET_DATA_DIR=str(data_dir),
            XDG_CACHE_HOME=str(base / "cache"),  # matplotlib's font cache, built once
            MPLBACKEND="Agg",
        )
        # one BLAS thread unless a command says otherwise: the commands' results do not depend
        # on it, and on a busy machine several threads per process wait for each other
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            self.env.setdefault(var, "1")
        self.env.pop("XPNET_MNIST_DIR", None)
        self.attempted: set[int] = set()
        self.outputs: dict[str, str] = {}

    def run(self, block: Block) -> list[str]:
        """Run the block's commands; return what each command got: "ran", "parsed (why)",
        "checked (why)" or "not run (why)". A command that fails raises."""
        self.attempted.add(block.line)
        if block.note("mnist") and mnist_dir() is None:
            return ["not run (needs MNIST: set XPNET_DATA_DIR to a folder with the MNIST files)"]
        parse_all = block.note("parse-only")
        matching = block.note("parse-only-matching")
        expected = int(block.note("exit")[0][0]) if block.note("exit") else 0
        outcomes = []
        for cmd in commands_of(block.shortened):
            target = xpnet_target(cmd)
            if target is not None:
                reason = next((r for t, r in matching if t in str(cmd)), None)
                if parse_all or reason:
                    parse_only(cmd)
                    outcomes.append(f"`{cmd}`: parsed ({reason or parse_all[0][0]})")
                elif cmd.argv[0] == "srun":
                    raise AssertionError(f"{block.id}: `{cmd}` needs Slurm: note parse-only")
                elif cmd.argv[0] == "mpiexec" and (
                    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None
                ):
                    parse_only(cmd)
                    outcomes.append(
                        f"`{cmd}`: parsed, not run (needs mpi4py and mpiexec: pip install -e "
                        f"'.[mpi]')"
                    )
                else:
                    self.execute(block, cmd, target, expected)
                    outcomes.append("ran")
            elif cmd.argv[0] in TOOLS:
                if shutil.which(cmd.argv[0]) is None:
                    outcomes.append(f"`{cmd}`: not run ({cmd.argv[0]} is not installed)")
                else:
                    self.execute(block, cmd, None, expected, cwd=ROOT)
                    outcomes.append("ran")
            elif (reason := not_run_reason(cmd)) is not None:
                checked = True
                if cmd.starts("pip", "install"):
                    check_pip(cmd)
                elif cmd.argv[0] == "nox":
                    check_nox(cmd)
                elif cmd.starts("python", "-m", "pytest"):
                    check_pytest(cmd)
                elif cmd.argv[0] == "bash":
                    subprocess.run(["bash", "-n", str(ROOT / cmd.argv[1])], check=True)
                else:
                    checked = False
                outcomes.append(f"`{cmd}`: {'checked' if checked else 'not run'} ({reason})")
            else:
                raise AssertionError(
                    f"{block.id}: the docs tests do not know how to run `{cmd}`; add it to NOT_RUN "
                    f"or note how before the block"
                )
        return outcomes

    def execute(self, block, cmd: Command, target, expected: int, cwd=None) -> None:
        launcher = []
        if (inner := launched(cmd)) is not None:
            # the launcher's own mpiexec (the mpich wheel's, beside this Python) if there is one
            launcher = [MPIEXEC, *inner[0][1:]]
            cmd = inner[1]
        if target is None:
            argv = cmd.argv
        elif target[0].startswith("scripts/"):
            argv = [sys.executable, target[0], *target[1]]
        else:
            argv = [sys.executable, "-m", "xpnet", *cmd.argv[cmd.argv.index("xpnet") + 1 :]]
        proc = subprocess.Popen(
            [*launcher, *argv], cwd=cwd or self.dir, env={**self.env, **cmd.env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            for _ in range(2):  # mpiexec passes a Ctrl-C to its processes, and ends on a second
                proc.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(2)
            proc.kill()
            stdout, stderr = proc.communicate()
            raise AssertionError(f"{block.id}: `{cmd}` ran past {COMMAND_TIMEOUT} s") from None
        proc = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        self.outputs[str(cmd)] = proc.stdout
        assert proc.returncode == expected, (
            f"{block.id}: `{cmd}` (run as {argv[1:]}) exited {proc.returncode}, not {expected}:\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )


@pytest.fixture(scope="session")
def workspaces(tmp_path_factory):
    base = tmp_path_factory.mktemp("docs-commands")
    data_dir = mnist_dir()
    if data_dir is None:
        data_dir = base / "no-data"  # an empty folder named: nothing is ever downloaded
        data_dir.mkdir()
    return base, data_dir, {}


def workspace_for(workspaces, block: Block) -> Workspace:
    base, data_dir, made = workspaces
    if block.page not in made:
        made[block.page] = Workspace(block.page, base, data_dir)
    ws = made[block.page]
    for earlier in SHELL:  # a block may use what an earlier block of its page made
        if (
            earlier.page == block.page
            and earlier.line < block.line
            and earlier.line not in ws.attempted
        ):
            if not earlier.note("skip"):
                with contextlib.suppress(Exception):
                    ws.run(earlier)
            ws.attempted.add(earlier.line)
    return ws


@pytest.mark.parametrize("block", SHELL, ids=block_ids(SHELL))
def test_shell_block(block, workspaces):
    _skip_if_noted(block)
    outcomes = workspace_for(workspaces, block).run(block)
    # a block whose commands were all left out, or one whose mpiexec command could only be parsed
    if all("not run (" in o for o in outcomes) or any("parsed, not run (" in o for o in outcomes):
        pytest.skip(f"{block.id}: " + "; ".join(outcomes))


README_OUTPUT = re.compile(
    r"^(?:iter|final)\s+(\d+) / \d+ \| loss ([\d.]+) \| train acc: ([\d.]+) test acc: ([\d.]+)$",
    re.M,
)


@pytest.mark.mnist
@pytest.mark.skipif(
    mnist_dir() is None, reason="set XPNET_DATA_DIR to a folder with the MNIST files"
)
def test_readme_output_is_what_the_main_command_prints(workspaces):
    """The README's output of `xpnet train`: the lines its shortened run (1,200 iterations, the
    same seed and sample order) prints are the README's lines for those iterations."""
    block = next(b for b in SHELL if b.page == README and "xpnet train" in b.text)
    ws = workspace_for(workspaces, block)
    if block.line not in ws.attempted or not any(k.startswith("xpnet train") for k in ws.outputs):
        ws.run(block)
    printed = {
        int(m[0]): m[1:]
        for m in README_OUTPUT.findall(
            next(v for k, v in ws.outputs.items() if k.startswith("xpnet train"))
        )
    }
    readme = next(
        b for b in BLOCKS if b.page == README and b.lang == "text" and "iter     0" in b.text
    )
    shown = {int(m[0]): m[1:] for m in README_OUTPUT.findall(readme.text)}
    common = sorted(set(printed) & set(shown))
    assert common == [0, 600, 1200], (printed, shown)
    for it in common:
        # another CPU's BLAS may round a float32 sum differently: a few images at a boundary
        assert np.allclose(
            [float(v) for v in printed[it]], [float(v) for v in shown[it]], atol=5e-4
        ), (it, printed[it], shown[it])


# ---------------------------------------------------------------- inline commands and links

INLINE = re.compile(r"`((?:xpnet|python -m xpnet|python scripts/\w+\.py) [^`]+)`")


def inline_commands():
    found = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for m in INLINE.finditer(text):
            command = " ".join(m.group(1).split())  # a span may break across lines
            words = command.split()
            placeholder = any(re.fullmatch(r"[A-Z][A-Z_]+", w) for w in words)
            bare = words[0] == "xpnet" and len(words) < 3  # a name, like `xpnet train`
            if not placeholder and not bare and "..." not in command:
                found.append(pytest.param(command, id=f"{rel(page)}:{command}"))
    return found


@pytest.mark.parametrize("command", inline_commands())
def test_inline_command_parses(command):
    parse_only(commands_of(command)[0])


LINK = re.compile(r"\]\(([^)\s]+)\)|href=\"([^\"]+)\"|src=\"([^\"]+)\"")


def github_slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_readme_links_resolve():
    # a link inside an HTML comment is not shown (a marked place for a page to come)
    text = re.sub(r"<!--.*?-->", "", README.read_text(encoding="utf-8"), flags=re.S)
    for m in LINK.finditer(text):
        target = next(g for g in m.groups() if g)
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path
        assert file.exists(), f"README links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.*)$", file.read_text(encoding="utf-8"), re.M)
            assert anchor in {github_slug(h) for h in headings}, (
                f"README links to {target}: no such heading"
            )


# ---------------------------------------------------------------- the site


def test_docs_site_builds(tmp_path):
    """`mkdocs build --strict`: every page, link, anchor and API docstring, warnings as errors."""
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(
            module, reason=f"the docs build needs {module}: pip install -e '.[docs]'"
        )
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert (tmp_path / "site" / "api" / "nn" / "index.html").exists()
