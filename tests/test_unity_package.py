"""The Unity package is installable as it is: manifest, assemblies, and a .meta for each asset."""

from __future__ import annotations

import json

from unity_bridge.gen_protocol import PACKAGE, package_assets


def test_manifest_and_samples() -> None:
    manifest = json.loads((PACKAGE / "package.json").read_text(encoding="utf-8"))
    assert manifest["name"] == "com.aicompanion.bridge" and manifest["version"]
    for sample in manifest["samples"]:
        assert list((PACKAGE / sample["path"]).glob("*.cs")), sample


def test_protocol_assembly_is_engine_free_and_the_driver_uses_it() -> None:
    protocol = json.loads((PACKAGE / "Runtime/Protocol/AICompanion.Bridge.Protocol.asmdef")
                          .read_text(encoding="utf-8"))
    assert protocol["noEngineReferences"] is True and protocol["references"] == []
    driver = json.loads((PACKAGE / "Runtime/Unity/AICompanion.Bridge.asmdef")
                        .read_text(encoding="utf-8"))
    assert protocol["name"] in driver["references"]
    defines = {d["define"] for d in driver["versionDefines"]}
    assert defines == {"AIC_VRM10", "AIC_UNIVRM0"}


def test_every_asset_has_exactly_one_meta_with_a_unique_guid() -> None:
    assets = package_assets()
    metas = sorted(PACKAGE.rglob("*.meta"))
    assert sorted(a.with_name(a.name + ".meta") for a in assets) == metas  # none orphaned
    guids = [m.read_text(encoding="utf-8").split("guid: ")[1][:32] for m in metas]
    assert len(set(guids)) == len(guids)


def asmdefs() -> dict[str, dict]:
    out = {}
    for path in PACKAGE.rglob("*.asmdef"):
        spec = json.loads(path.read_text(encoding="utf-8"))
        out[spec["name"]] = spec
    return out


def test_manifest_names_unity_and_the_modules_it_needs() -> None:
    manifest = json.loads((PACKAGE / "package.json").read_text(encoding="utf-8"))
    # UniVRM 0.124 and later need 2021.3: a lower minimum would promise what cannot install.
    assert tuple(map(int, manifest["unity"].split("."))) >= (2021, 3)
    assert {"com.unity.modules.animation", "com.unity.modules.physics",
            "com.unity.modules.imgui"} <= set(manifest["dependencies"])
    changelog = (PACKAGE / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{manifest['version']}]" in changelog  # the current version is described
    assert (PACKAGE / "LICENSE.md").read_text(encoding="utf-8").strip()


def test_every_asmdef_reference_is_an_assembly_that_exists() -> None:
    # A misspelt reference is only a warning in Unity, and the code then fails to build for
    # users whose UniVRM has that assembly: every name must be a known one.
    from tests.csharp.unity_build import LAYOUTS
    known = {*asmdefs(), *(a for layout in LAYOUTS.values() for a in layout),
             "Unity.InputSystem", "UnityEngine.TestRunner", "UnityEditor.TestRunner"}
    for name, spec in asmdefs().items():
        assert set(spec["references"]) <= known, name
    bridge = asmdefs()["AICompanion.Bridge"]
    # Where IAwaitCaller lives: UniGLTF.Utils (>= 0.131.1), UniGLTF (0.125..0.131.0),
    # VRMShaders.GLTF.IO.Runtime (<= 0.124).
    assert {"UniGLTF.Utils", "UniGLTF", "VRMShaders.GLTF.IO.Runtime"} <= set(bridge["references"])


def test_editor_and_test_assemblies_stay_out_of_players() -> None:
    specs = asmdefs()
    for name in ("AICompanion.Bridge.Editor", "AICompanion.Bridge.Tests.Editor"):
        assert specs[name]["includePlatforms"] == ["Editor"], name
    tests = specs["AICompanion.Bridge.Tests.Editor"]
    assert tests["defineConstraints"] == ["UNITY_INCLUDE_TESTS"]
    assert tests["overrideReferences"] is True and "nunit.framework.dll" in tests[
        "precompiledReferences"] and tests["autoReferenced"] is False
    sample = specs["AICompanion.Bridge.Samples"]
    assert {"name": "com.unity.inputsystem", "expression": "1.0.0",
            "define": "AIC_INPUT_SYSTEM"} in sample["versionDefines"]
