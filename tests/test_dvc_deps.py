"""dvc.yaml lists exactly the code each stage runs: derived from the imports of the stage's entry point.

A stage's command is ``edgesr <stage> ...``: the CLI module, the params loader it calls and the stage
module ``edgesr.stages.<stage>``, with every ``edgesr`` module they import, transitively, at any
level (function-level imports included, ``if TYPE_CHECKING:`` blocks excluded), and the packages'
``__init__.py`` that Python runs on the way. The CLI's function-level imports belong to its other
commands and are not followed. A listed folder must be wholly imported (otherwise a change to a file
the stage never runs would rerun it), and no imported file may be missing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "edgesr"


def module_file(module: str) -> Path | None:
    """The file of ``edgesr.x.y`` (``x/y.py`` or ``x/y/__init__.py``), None when it is not a module."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.AST, top_level_only: bool) -> set[str]:
    """``edgesr`` modules named by the import statements of ``tree``."""
    found: set[str] = set()
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {
                f"{node.module}.{alias.name}" for alias in node.names if module_file(f"{node.module}.{alias.name}")
            }
        if not (top_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return {name for name in found if name.split(".")[0] == PACKAGE and module_file(name)}


def _with_parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def imported_files(*modules: str) -> set[Path]:
    """Files of ``modules`` and of every ``edgesr`` module they import, transitively, with their packages."""
    seen: set[str] = set()
    todo = [name for module in modules for name in _with_parents(module)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        tree = ast.parse(module_file(module).read_text())
        todo += [name for imported in _imports(tree, top_level_only=False) for name in _with_parents(imported)]
    return {module_file(module) for module in seen}


def stage_code(stage: str) -> set[Path]:
    """Every file ``edgesr <stage>`` runs (see the module docstring)."""
    cli = SRC / PACKAGE / "cli.py"
    cli_top = _imports(ast.parse(cli.read_text()), top_level_only=True)
    return {cli} | imported_files(*cli_top, "edgesr.config", f"edgesr.stages.{stage}")


def dvc_stages() -> dict[str, tuple[str, list[str]]]:
    """stage name -> (its ``edgesr`` subcommand, its ``src/`` deps) from dvc.yaml (a foreach/matrix body once)."""
    stages = {}
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        command = body["cmd"].split()
        assert command[0] == PACKAGE, f"stage {name}: its command does not start with `edgesr`: {body['cmd']}"
        stages[name] = (command[1], [dep for dep in body.get("deps", []) if str(dep).startswith("src/")])
    return stages


def listed_files(deps: list[str]) -> set[Path]:
    """The Python files the ``src/`` deps of a stage cover (a folder: every .py under it)."""
    files: set[Path] = set()
    for dep in deps:
        path = ROOT / dep
        assert path.exists(), f"dvc.yaml lists {dep}, which does not exist"
        files |= set(path.rglob("*.py")) if path.is_dir() else {path}
    return files


def differences(stage: str, deps: list[str]) -> tuple[list[str], list[str]]:
    """(imported but not listed, listed but not imported), as paths relative to the project root."""
    needed, listed = stage_code(stage), listed_files(deps)
    relative = lambda paths: sorted(str(p.relative_to(ROOT)) for p in paths)  # noqa: E731
    return relative(needed - listed), relative(listed - needed)


@pytest.mark.parametrize("name", list(dvc_stages()))
def test_dvc_yaml_lists_exactly_the_code_each_stage_imports(name):
    command, deps = dvc_stages()[name]
    missing, extra = differences(command, deps)
    assert not missing, (
        f"stage {name} imports code dvc.yaml does not list (a change there would not rerun it): {missing}"
    )
    assert not extra, f"stage {name} lists code it never imports (a change there reruns it for nothing): {extra}"


def test_the_check_fails_on_a_wrong_dvc_yaml():
    command, deps = dvc_stages()["evaluate"]
    missing, _ = differences(command, [dep for dep in deps if dep != "src/edgesr/metrics.py"])
    assert missing == ["src/edgesr/metrics.py"]
    _, extra = differences(command, [*deps, "src/edgesr/quant/calibration.py"])
    assert extra == ["src/edgesr/quant/calibration.py"]


def test_no_stage_imports_another_stage():
    for path in sorted((SRC / PACKAGE / "stages").glob("*.py")):
        imported = _imports(ast.parse(path.read_text()), top_level_only=False)
        others = sorted(name for name in imported if name.startswith("edgesr.stages."))
        assert not others, f"{path.name} imports {others}: move what they share into the library"
    # the CLI runs stages (``from edgesr.stages import train``; ``train.run(...)``) and takes nothing from inside one
    cli = ast.parse((SRC / PACKAGE / "cli.py").read_text())
    inside = [
        n.module
        for n in ast.walk(cli)
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("edgesr.stages.")
    ]
    assert not inside, f"the CLI imports names from inside stage modules {inside}: move them into the library"
