"""The packages of src/ depend on each other only downwards, and a robot PC never loads MuJoCo.

Levels (a package may import only packages of a lower level):

    0 mtopt_interfaces
    1 mtopt_core
    2 mtopt_bridge
    3 runtime: mtopt_launch, mtopt_iiwa, mtopt_camera, mtopt_reset_bin, mtopt_logger,
      mtopt_policy, mtopt_sd, mtopt_learner (they do not import each other)
    4 mtopt_sim
    5 top: mtopt_bringup, mtopt_demo (they do not import each other)
    6 mtopt_experiments (lab tools; `mtopt-eval --ros` drives the demo's ROS stages)

Every .py file of every src/<pkg> with a package.xml is parsed with `ast`, so imports inside
functions count as much as module-level ones. Checked per package: (a) no import of a package
at the same or a higher level, (b) no simulator modules (mujoco, pybullet, gymnasium) below
mtopt_sim, (c) every imported mtopt package is declared in the importer's package.xml, and
package.xml declares no mtopt package with Python code at the same or a higher level either
(a files-only package such as mtopt_bringup's launch files may be declared by its users).
A package missing from the level table is an error that names it. Then every node module of a
runtime package is imported in a fresh interpreter to show that no simulator module is loaded
(what static parsing cannot see, e.g. a dependency importing one).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

RUNTIME = 3
SIM = 4
RUNTIME_PACKAGES = (
    "mtopt_launch", "mtopt_iiwa", "mtopt_camera", "mtopt_reset_bin", "mtopt_logger",
    "mtopt_policy", "mtopt_sd", "mtopt_learner",
)  # fmt: skip
TOP_PACKAGES = ("mtopt_bringup", "mtopt_demo")
LEVELS = {
    "mtopt_interfaces": 0,
    "mtopt_core": 1,
    "mtopt_bridge": 2,
    **dict.fromkeys(RUNTIME_PACKAGES, RUNTIME),
    "mtopt_sim": SIM,
    **dict.fromkeys(TOP_PACKAGES, 5),
    "mtopt_experiments": 6,
}
#: Modules only the simulator and the top level may load.
SIM_MODULES = ("mujoco", "pybullet", "gymnasium")
DECLARING_TAGS = ("depend", "exec_depend", "build_depend")


@dataclass(frozen=True)
class Package:
    name: str
    path: Path
    declared: frozenset[str]  # <depend>, <exec_depend>, <build_depend> of package.xml
    modules: frozenset[str]  # top-level Python modules it provides (and its own name)
    has_python: bool  # False: files only (launch, config, interface definitions)


def discover(src: Path) -> dict[str, Package]:
    """Every src/<pkg> with a package.xml, by name."""
    packages = {}
    for xml in sorted(src.glob("*/package.xml")):
        root = ET.parse(xml).getroot()
        name = (root.findtext("name") or "").strip()
        declared = frozenset(
            (element.text or "").strip() for tag in DECLARING_TAGS for element in root.iter(tag)
        )
        python = {init.parent.name for init in xml.parent.glob("*/__init__.py")}
        packages[name] = Package(
            name, xml.parent, declared, frozenset({name} | python), bool(python)
        )
    return packages


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in a file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def problems_of(package: Package, packages: dict[str, Package]) -> list[str]:
    """Every violation of the rules above by `package`, one line each."""
    if package.name not in LEVELS:
        return [
            f"{package.name}: package not in the dependency level table of "
            f"test/test_package_dependencies.py; add it there"
        ]
    level = LEVELS[package.name]
    provider = {module: p.name for p in packages.values() for module in p.modules}
    # A files-only package (launch and config files) may be declared at any level: using its
    # files is not importing its code.
    problems = [
        f"{package.name}/package.xml: declares {dep} (level {LEVELS[dep]}); only lower levels "
        f"may be depended on"
        for dep in sorted(package.declared)
        if dep != package.name
        and LEVELS.get(dep, -1) >= level
        and (dep not in packages or packages[dep].has_python)
    ]
    for path in sorted(package.path.rglob("*.py")):
        if any(part.endswith(".egg-info") for part in path.parts):
            continue
        where = path.relative_to(package.path.parent)
        for line, module in imports_of(path):
            imported = provider.get(module)
            if imported is None:
                if module.startswith("mtopt_"):
                    problems.append(f"{where}:{line}: imports {module}, no package of src/")
                elif module in SIM_MODULES and level < SIM:
                    problems.append(
                        f"{where}:{line}: imports {module}; only mtopt_sim and the top level "
                        f"may (a robot PC never loads the simulator)"
                    )
                continue
            if imported == package.name:
                continue
            if imported not in LEVELS:
                continue  # reported for that package itself
            if LEVELS[imported] >= level:
                problems.append(
                    f"{where}:{line}: imports {imported} (level {LEVELS[imported]}) from "
                    f"{package.name} (level {level}); only lower levels may be imported"
                )
            if imported not in package.declared:
                problems.append(
                    f"{where}:{line}: imports {imported}, not declared in "
                    f"{package.name}/package.xml (<depend> or <exec_depend>)"
                )
    return problems


PACKAGES = discover(SRC)


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_package_imports_only_declared_packages_below_it(name):
    problems = problems_of(PACKAGES[name], PACKAGES)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the checker on a fake tree
def _fake_package(src: Path, name: str, depends: tuple[str, ...], files: dict[str, str]) -> None:
    root = src / name
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    tags = "".join(f"<exec_depend>{d}</exec_depend>" for d in depends)
    (root / "package.xml").write_text(
        f'<?xml version="1.0"?><package format="3"><name>{name}</name>{tags}</package>'
    )
    for file, text in files.items():
        (root / name / file).write_text(text)


def test_checker_finds_upward_lazy_undeclared_and_simulator_imports(tmp_path):
    _fake_package(tmp_path, "mtopt_core", (), {"ok.py": "import numpy\n"})
    _fake_package(tmp_path, "mtopt_sim", ("mtopt_core",), {"env.py": "import mujoco\n"})
    _fake_package(
        tmp_path,
        "mtopt_policy",
        ("mtopt_core",),
        {
            "planted.py": (
                "from mtopt_core import ok\n"
                "def later():\n"
                "    from mtopt_sim.env import Env  # lazy, still counted\n"
                "    import gymnasium.spaces\n"
            )
        },
    )
    _fake_package(
        tmp_path, "mtopt_logger", ("mtopt_launch",), {"log.py": "import mtopt_core.ok\n"}
    )
    _fake_package(tmp_path, "mtopt_extra", (), {})
    _fake_package(tmp_path, "mtopt_demo", ("mtopt_bringup", "mtopt_experiments"), {})
    _fake_package(tmp_path, "mtopt_experiments", (), {})
    (tmp_path / "mtopt_bringup").mkdir()  # launch and config files only
    (tmp_path / "mtopt_bringup" / "package.xml").write_text(
        '<package format="3"><name>mtopt_bringup</name></package>'
    )
    packages = discover(tmp_path)

    assert problems_of(packages["mtopt_policy"], packages) == [
        "mtopt_policy/mtopt_policy/planted.py:3: imports mtopt_sim (level 4) from mtopt_policy "
        "(level 3); only lower levels may be imported",
        "mtopt_policy/mtopt_policy/planted.py:3: imports mtopt_sim, not declared in "
        "mtopt_policy/package.xml (<depend> or <exec_depend>)",
        "mtopt_policy/mtopt_policy/planted.py:4: imports gymnasium; only mtopt_sim and the top "
        "level may (a robot PC never loads the simulator)",
    ]
    declared_sideways, undeclared = problems_of(packages["mtopt_logger"], packages)
    assert "mtopt_logger/package.xml: declares mtopt_launch (level 3)" in declared_sideways
    assert "imports mtopt_core, not declared in mtopt_logger/package.xml" in undeclared
    (extra,) = problems_of(packages["mtopt_extra"], packages)
    assert extra.startswith("mtopt_extra: package not in the dependency level table")
    (demo,) = problems_of(packages["mtopt_demo"], packages)  # bringup's files are fine
    assert demo.startswith("mtopt_demo/package.xml: declares mtopt_experiments (level 6)")
    assert problems_of(packages["mtopt_sim"], packages) == []  # the simulator may load MuJoCo
    assert problems_of(packages["mtopt_core"], packages) == []


# ------------------------------------------------------------ what a robot PC's nodes load
def _node_modules() -> list[str]:
    return sorted(
        f"{module}.{path.stem}"
        for package in PACKAGES.values()
        if LEVELS.get(package.name) == RUNTIME
        for module in package.modules
        for path in (package.path / module).glob("*_node.py")
    ) + ["mtopt_policy.policy"]


_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
banned = {"mujoco", "pybullet", "gymnasium", "mtopt_sim"}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in banned)))
"""


@pytest.mark.parametrize("module", _node_modules())
def test_runtime_node_module_loads_no_simulator(module):
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, module], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"import {module} failed:\n{proc.stderr[-3000:]}"
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"import {module} loads {loaded}"
