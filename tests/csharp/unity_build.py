"""Compile the Unity package with Mono the way Unity would: per asmdef, with its references and
versionDefines, against stand-ins of UnityEngine and of two UniVRM layouts.

What an assembly may see is what Unity would give it, and no more:
- its asmdef's `references` that exist in the project (a missing name is skipped, as Unity
  does with a warning), so a reference left out of the asmdef is a compile error here too
  (CS0012 when a called method's signature names a type of that assembly);
- the UnityEngine modules of the built-in packages that package.json declares (plus the core
  module), so an undeclared module dependency fails to compile;
- UnityEditor only for Editor-only assemblies; the legacy Input class only when the Player
  setting ENABLE_LEGACY_INPUT_MANAGER is on (in a new-Input-System-only project it throws);
- the defines its `versionDefines` produce for the installed packages.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "unity_bridge" / "unity"
STANDINS = Path(__file__).resolve().parent / "standins"
UNITY = STANDINS / "unity"

# UnityEngine module assembly -> the built-in package that provides it (None: always there).
ENGINE_MODULES = {"UnityEngine.CoreModule": None,
                  "UnityEngine.AnimationModule": "com.unity.modules.animation",
                  "UnityEngine.PhysicsModule": "com.unity.modules.physics",
                  "UnityEngine.IMGUIModule": "com.unity.modules.imgui"}
LEGACY_INPUT = "UnityEngine.InputLegacyModule"

# UniVRM layouts: assembly -> (the UPM package that holds it, its references), in build order.
LAYOUTS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "v0.131.1": {
        "UniGLTF.Utils": ("com.vrmc.gltf", ()),
        "UniGLTF": ("com.vrmc.gltf", ("UniGLTF.Utils",)),
        "VRM": ("com.vrmc.univrm", ("UniGLTF", "UniGLTF.Utils")),
        "VRM10": ("com.vrmc.vrm", ("UniGLTF", "UniGLTF.Utils")),
    },
    "v0.124.2": {
        "VRMShaders.GLTF.IO.Runtime": ("com.vrmc.vrmshaders", ()),
        "UniGLTF.Utils": ("com.vrmc.gltf", ()),
        "UniGLTF": ("com.vrmc.gltf", ("VRMShaders.GLTF.IO.Runtime",)),
        "VRM": ("com.vrmc.univrm", ("UniGLTF", "VRMShaders.GLTF.IO.Runtime")),
        "VRM10": ("com.vrmc.vrm", ("UniGLTF", "VRMShaders.GLTF.IO.Runtime")),
    },
}
# Which UniVRM packages a user installs for each choice (UniVRM's install page).
VRM_CHOICES = {"none": (), "vrm10": ("com.vrmc.vrm",), "vrm0": ("com.vrmc.univrm",),
               "both": ("com.vrmc.vrm", "com.vrmc.univrm")}
SUPPORT_PACKAGES = {"v0.131.1": ("com.vrmc.gltf",),
                    "v0.124.2": ("com.vrmc.gltf", "com.vrmc.vrmshaders")}

# The package's assemblies, in build order: asmdef folder -> its .cs files.
ASSEMBLIES = {"AICompanion.Bridge.Protocol": "Runtime/Protocol",
              "AICompanion.Bridge": "Runtime/Unity",
              "AICompanion.Bridge.Editor": "Editor",
              "AICompanion.Bridge.Samples": "Samples~/BasicAvatar",
              "AICompanion.Bridge.Tests.Editor": "Tests/Editor"}


class CompileError(AssertionError):
    pass


def toolchain() -> tuple[str, str] | None:
    mcs, mono = shutil.which("mcs"), shutil.which("mono")
    return (mcs, mono) if mcs and mono else None


def mcs(out: Path, sources: list[Path], refs: list[Path], defines: list[str] = (),
        target: str = "library") -> Path:
    cmd = [shutil.which("mcs") or "mcs", "-nologo", "-warnaserror+", "-nowarn:618",
           f"-target:{target}", f"-out:{out}",
           *(f"-r:{r}" for r in refs), *(f"-d:{d}" for d in defines), *map(str, sources)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise CompileError(f"{out.name} ({' '.join(defines) or 'no defines'}):\n"
                           + result.stdout + result.stderr)
    return out


def asmdef(folder: str) -> dict:
    path = next((PACKAGE / folder).glob("*.asmdef"))
    return json.loads(path.read_text(encoding="utf-8"))


def manifest_modules() -> set[str]:
    manifest = json.loads((PACKAGE / "package.json").read_text(encoding="utf-8"))
    deps = manifest.get("dependencies", {})
    return {m for m, pkg in ENGINE_MODULES.items() if pkg is None or pkg in deps}


@dataclass
class Project:
    """A Unity project: a UniVRM layout, the packages installed, the Player's input setting."""

    layout: str
    vrm: str = "both"
    input_system: bool = True  # com.unity.inputsystem installed, ENABLE_INPUT_SYSTEM on
    legacy_input: bool = True  # ENABLE_LEGACY_INPUT_MANAGER on
    work: Path = field(default_factory=Path)
    built: dict[str, Path] = field(default_factory=dict)

    @property
    def packages(self) -> set[str]:
        pkgs = set(VRM_CHOICES[self.vrm])
        if pkgs:
            pkgs |= set(SUPPORT_PACKAGES[self.layout])
        if self.input_system:
            pkgs.add("com.unity.inputsystem")
        return pkgs

    def engine(self, editor: bool) -> list[Path]:
        names = sorted(manifest_modules())
        if self.legacy_input:
            names.append(LEGACY_INPUT)
        if editor:
            names.append("UnityEditor.CoreModule")
        return [standin(self.work, "unity", n) for n in names]

    def available(self) -> dict[str, Path]:
        """Assemblies of installed packages, by name."""
        out = {}
        for name, (pkg, _deps) in LAYOUTS[self.layout].items():
            if pkg in self.packages:
                out[name] = univrm(self.work, self.layout, name)
        if "com.unity.inputsystem" in self.packages:
            out["Unity.InputSystem"] = standin(self.work, "unity", "Unity.InputSystem")
        return out

    def defines(self, spec: dict, editor: bool) -> list[str]:
        out = [d["define"] for d in spec.get("versionDefines", []) if d["name"] in self.packages]
        if self.input_system:
            out.append("ENABLE_INPUT_SYSTEM")
        if self.legacy_input:
            out.append("ENABLE_LEGACY_INPUT_MANAGER")
        if editor:
            out += ["UNITY_EDITOR", "UNITY_INCLUDE_TESTS"]
        return out

    def build(self, name: str) -> Path:
        """Compile one of the package's assemblies (and those it references) as Unity would."""
        if name in self.built:
            return self.built[name]
        folder = ASSEMBLIES[name]
        spec = asmdef(folder)
        assert spec["name"] == name, (folder, spec["name"])
        editor = spec.get("includePlatforms") == ["Editor"]
        refs: list[Path] = []
        available = self.available()
        for ref in spec.get("references", []):
            if ref in ASSEMBLIES:
                refs.append(self.build(ref))
            elif ref in available:
                refs.append(available[ref])
        for dll in spec.get("precompiledReferences", []):
            if dll == "nunit.framework.dll":
                refs.append(standin(self.work, "unity", "nunit.framework"))
        if not spec.get("noEngineReferences"):
            refs += self.engine(editor)
        sources = sorted((PACKAGE / folder).rglob("*.cs"))
        out = self.work / (f"{self.layout}-{self.vrm}-"
                           f"{int(self.input_system)}{int(self.legacy_input)}")
        out.mkdir(parents=True, exist_ok=True)
        self.built[name] = mcs(out / f"{name}.dll", sources, refs, self.defines(spec, editor))
        return self.built[name]


def standin(work: Path, group: str, name: str) -> Path:
    """A stand-in assembly of tests/csharp/standins/<group>/<name>.cs, built once."""
    out = work / "standins" / group / f"{name}.dll"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    refs = [] if name in ("UnityEngine.CoreModule", "nunit.framework") else \
        [standin(work, "unity", "UnityEngine.CoreModule")]
    return mcs(out, [STANDINS / group / f"{name}.cs"], refs)


def univrm(work: Path, layout: str, name: str) -> Path:
    out = work / "standins" / f"univrm-{layout}" / f"{name}.dll"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    _pkg, deps = LAYOUTS[layout][name]
    refs = [univrm(work, layout, d) for d in deps]
    refs += [standin(work, "unity", m) for m in ENGINE_MODULES]
    return mcs(out, [STANDINS / f"univrm-{layout}" / f"{name}.cs"], refs)


def compile_errors(text: str) -> list[str]:
    """The error codes of a failed compile (CS0012, CS0117, ...)."""
    return re.findall(r"error (CS\d{4})", text)
