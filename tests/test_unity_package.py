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
