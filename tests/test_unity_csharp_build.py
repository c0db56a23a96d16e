"""The whole Unity package compiles as Unity would compile it, and its edit-mode tests pass.

Every assembly of the package (Runtime/Protocol, Runtime/Unity, Editor, the sample, the
edit-mode tests) is compiled with Mono per asmdef, for each UniVRM choice (none, VRM 1.0,
VRM 0.x, both: the asmdef's versionDefines) and two UniVRM layouts (v0.131.1 with
UniGLTF.Utils, and v0.124.2 with VRMShaders), against stand-ins that carry exactly the
members the package uses (tests/csharp/standins; tests/csharp/unity_build.py says how).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.csharp import unity_build as ub
from unity_bridge.gen_protocol import expression_table

pytestmark = pytest.mark.skipif(
    ub.toolchain() is None and sys.platform != "linux",
    reason="mcs/mono are installed by bootstrap.py test on Linux only")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if ub.toolchain() is None:
        pytest.fail("mcs and mono are needed: apt-get install mono-mcs mono-runtime "
                    "(python3 bootstrap.py test does it when run as root)")
    return tmp_path_factory.mktemp("unity-build")


@pytest.mark.parametrize("layout", sorted(ub.LAYOUTS))
@pytest.mark.parametrize("vrm", list(ub.VRM_CHOICES))
def test_every_assembly_compiles(work: Path, layout: str, vrm: str) -> None:
    project = ub.Project(layout, vrm, work=work)
    for name in ub.ASSEMBLIES:
        assert project.build(name).exists()


@pytest.mark.parametrize("input_system,legacy_input", [(True, False), (False, True),
                                                       (False, False)])
def test_the_sample_compiles_with_either_input_handling(work: Path, input_system: bool,
                                                        legacy_input: bool) -> None:
    # (True, False) is the Unity 6 template: the Input System only. The legacy Input class
    # throws there, so it must not be reached: it is not even referenced in this build.
    project = ub.Project("v0.131.1", "vrm10", input_system=input_system,
                         legacy_input=legacy_input, work=work)
    assert project.build("AICompanion.Bridge.Samples").exists()


def copy_package(tmp: Path) -> Path:
    dest = tmp / "pkg"
    shutil.copytree(ub.PACKAGE, dest)
    return dest


def test_the_asmdef_without_unigltf_utils_fails_like_univrm_issue_2807(
        work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The defect this package had: on v0.131.1 IAwaitCaller is in UniGLTF.Utils, which the
    # asmdef did not reference; Unity (and mcs) fail with CS0012 on Vrm10.LoadPathAsync.
    pkg = copy_package(tmp_path)
    path = pkg / "Runtime/Unity/AICompanion.Bridge.asmdef"
    spec = json.loads(path.read_text(encoding="utf-8"))
    spec["references"].remove("UniGLTF.Utils")
    path.write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setattr(ub, "PACKAGE", pkg)
    with pytest.raises(ub.CompileError) as failed:
        ub.Project("v0.131.1", "vrm10", work=work / "no-utils").build("AICompanion.Bridge")
    assert "CS0012" in ub.compile_errors(str(failed.value))
    assert "UniGLTF.IAwaitCaller" in str(failed.value)
    # The layout before v0.125 never needed it.
    ub.Project("v0.124.2", "vrm10", work=work / "no-utils").build("AICompanion.Bridge")


def test_a_member_the_standins_lack_fails_the_build(
        work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The stand-ins hold only what the package uses: a new use must be added to them, from
    # UniVRM's source, or the build fails. Here a real UniVRM member they do not carry.
    pkg = copy_package(tmp_path)
    (pkg / "Runtime/Unity/Extra.cs").write_text(
        "#if AIC_VRM10\nnamespace AICompanion.Bridge { static class Extra { static void F("
        "UniVRM10.Vrm10Instance v) { v.Runtime.Expression.SetWeights(null); } } }\n#endif\n",
        encoding="utf-8")
    monkeypatch.setattr(ub, "PACKAGE", pkg)
    with pytest.raises(ub.CompileError) as failed:
        ub.Project("v0.131.1", "vrm10", work=work / "extra").build("AICompanion.Bridge")
    assert "CS1061" in ub.compile_errors(str(failed.value))


def test_an_undeclared_module_dependency_fails_the_build(
        work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # package.json must list the built-in modules the code uses (Animator: animation).
    pkg = copy_package(tmp_path)
    manifest = json.loads((pkg / "package.json").read_text(encoding="utf-8"))
    del manifest["dependencies"]["com.unity.modules.animation"]
    (pkg / "package.json").write_text(json.dumps(manifest), encoding="utf-8")
    monkeypatch.setattr(ub, "PACKAGE", pkg)
    with pytest.raises(ub.CompileError) as failed:
        ub.Project("v0.131.1", "none", work=work / "modules").build("AICompanion.Bridge")
    assert "Animator" in str(failed.value)


def test_standins_name_what_they_mirror() -> None:
    for layout in ub.LAYOUTS:
        folder = ub.STANDINS / f"univrm-{layout}"
        assert sorted(p.stem for p in folder.glob("*.cs")) == sorted(ub.LAYOUTS[layout])
        for path in folder.glob("*.cs"):
            head = path.read_text(encoding="utf-8")[:600]
            assert f"UniVRM {layout}" in head and ".cs" in head and "asmdef" in head, path


def run_edit_mode_tests(work: Path, vrm: str) -> str:
    project = ub.Project("v0.131.1", vrm, work=work)
    tests = project.build("AICompanion.Bridge.Tests.Editor")
    run = work / f"run-{vrm}"
    run.mkdir(exist_ok=True)
    for dll in {*project.built.values(), *project.available().values(), *(work / "standins")
                .rglob("*.dll")}:
        if "univrm-" not in str(dll.parent) or f"univrm-{project.layout}" in str(dll.parent):
            shutil.copy(dll, run / dll.name)
    runner = ub.mcs(run / "runner.exe", [ub.STANDINS.parent / "EditModeRunner.cs"],
                    [run / "nunit.framework.dll"], target="exe")
    result = subprocess.run([shutil.which("mono") or "mono", str(runner), str(run / tests.name)],
                            capture_output=True, text=True, timeout=120, cwd=run)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("vrm", ["both", "none"])
def test_edit_mode_tests_run_and_pass_under_mono(work: Path, vrm: str) -> None:
    out = run_edit_mode_tests(work, vrm)
    passed = int(re.search(r"TESTS (\d+) passed, 0 failed", out).group(1))
    assert "FAIL" not in out
    # With UniVRM the preset checks run too (every table name is a real enum member).
    assert ("Vrm0TargetResolvesPresets(blink_l, Blink_L)" in out) == (vrm == "both")
    assert passed >= (34 if vrm == "both" else 27), out


def test_the_readme_shows_the_one_expression_table() -> None:
    readme = (ub.PACKAGE / "README.md").read_text(encoding="utf-8")
    rows = [line for line in expression_table() if line.startswith("| `")]
    assert rows and all(row in readme for row in rows)
