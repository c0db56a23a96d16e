// Stand-in for UniVRM v0.124.2, assembly VRM10 (package com.vrmc.vrm, Assets/VRM10/Runtime/
// VRM10.asmdef), mirroring Assets/VRM10/Runtime/IO/Vrm10.cs (LoadPathAsync),
// Components/Vrm10Instance/Vrm10Instance.cs ([DefaultExecutionOrder(11000)]),
// Components/Vrm10Runtime/Vrm10Runtime.cs, Vrm10RuntimeExpression.cs, Vrm10RuntimeLookAt.cs,
// ControlRig/Vrm10RuntimeControlRig.cs, ControlRig/ControlRigGenerationOption.cs,
// Components/Expression/ExpressionKey.cs, ExpressionPreset.cs,
// Components/VRM10Object/VRM10Object.cs, VRM10ObjectLookAt.cs, Migration/Vrm0Meta.cs and
// Format/Vrm/Format.g.cs (Meta). IAwaitCaller and ITextureDeserializer come from VRMShaders.GLTF.IO.Runtime here. Compile-only: every body throws.
using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using UniGLTF;
using UnityEngine;
using VRMShaders;

namespace UniGLTF.Extensions.VRMC_vrm
{
    public class Meta { }
}

namespace UniVRM10.Migration
{
    public class Vrm0Meta { }
}

namespace UniVRM10
{
    public static class Vrm10
    {
        public delegate void VrmMetaInformationCallback(Texture2D thumbnail, UniGLTF.Extensions.VRMC_vrm.Meta vrm10Meta, Migration.Vrm0Meta vrm0Meta);

        public static Task<Vrm10Instance> LoadPathAsync(
            string path,
            bool canLoadVrm0X = true,
            ControlRigGenerationOption controlRigGenerationOption = ControlRigGenerationOption.Generate,
            bool showMeshes = true,
            IAwaitCaller awaitCaller = null,
            ITextureDeserializer textureDeserializer = null,
            IMaterialDescriptorGenerator materialGenerator = null,
            VrmMetaInformationCallback vrmMetaInformationCallback = null,
            CancellationToken ct = default(CancellationToken))
        { throw null; }
    }

    public enum ControlRigGenerationOption
    {
        None = 0,
        Generate = 1,
        Vrm0XCompatibleRig = 1,
    }

    public class PrefabRelatedScriptableObject : ScriptableObject { }
    public class VRM10Object : PrefabRelatedScriptableObject { }

    [Serializable]
    public class VRM10ObjectLookAt
    {
        public enum LookAtTargetTypes
        {
            SpecifiedTransform = 0,
            YawPitchValue = 1,
            [Obsolete] CalcYawPitchToGaze = 0,
            [Obsolete] SetYawPitch = 1,
        }
    }

    [DisallowMultipleComponent]
    [DefaultExecutionOrder(11000)]
    public class Vrm10Instance : MonoBehaviour
    {
        public VRM10Object Vrm;
        public Transform LookAtTarget;
        public VRM10ObjectLookAt.LookAtTargetTypes LookAtTargetType;
        public Vrm10Runtime Runtime { get { throw null; } }
        public bool TryGetBoneTransform(HumanBodyBones bone, out Transform t) { throw null; }
    }

    public class Vrm10Runtime : IDisposable
    {
        public Vrm10RuntimeControlRig ControlRig { get { throw null; } }
        public Vrm10RuntimeExpression Expression { get { throw null; } }
        public Vrm10RuntimeLookAt LookAt { get { throw null; } }
        public void Dispose() { throw null; }
    }

    public sealed class Vrm10RuntimeControlRig : IDisposable
    {
        public Animator ControlRigAnimator { get { throw null; } }
        public Transform GetBoneTransform(HumanBodyBones bone) { throw null; }
        public void Dispose() { throw null; }
    }

    public sealed class Vrm10RuntimeExpression
    {
        public IReadOnlyList<ExpressionKey> ExpressionKeys { get { throw null; } }
        public void SetWeight(ExpressionKey expressionKey, float weight) { throw null; }
    }

    public sealed class Vrm10RuntimeLookAt
    {
        public void SetYawPitchManually(float yaw, float pitch) { throw null; }
    }

    public enum ExpressionPreset
    {
        custom,
        happy,
        angry,
        sad,
        relaxed,
        surprised,
        aa,
        ih,
        ou,
        ee,
        oh,
        blink,
        blinkLeft,
        blinkRight,
        lookUp,
        lookDown,
        lookLeft,
        lookRight,
        neutral,
    }

    public struct ExpressionKey
    {
        public readonly ExpressionPreset Preset;
        public readonly string Name;
        public ExpressionKey(ExpressionPreset preset, string customName = null) { throw null; }
        public static ExpressionKey CreateCustom(String key) { throw null; }
        public static ExpressionKey CreateFromPreset(ExpressionPreset preset) { throw null; }
    }
}
