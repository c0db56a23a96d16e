// Stand-in for UniVRM v0.124.2, assembly VRM (package com.vrmc.univrm, Assets/VRM/Runtime/
// VRM.asmdef), mirroring Assets/VRM/Runtime/IO/VrmUtility.cs, BlendShape/VRMBlendShapeProxy.cs,
// BlendShape/BlendShapeKey.cs, BlendShape/BlendShapeAvatar.cs, BlendShape/BlendShapeClip.cs,
// Format/glTF_VRM_BlendShape.cs (BlendShapePreset), LookAt/VRMLookAtHead.cs,
// Meta/VRMMetaObject.cs and Format/glTF_VRM_extensions.cs. Compile-only: every body throws.
using System.Collections.Generic;
using System.Threading.Tasks;
using UniGLTF;
using UnityEngine;
using VRMShaders;

namespace VRM
{
    public static class VrmUtility
    {
        public delegate IMaterialDescriptorGenerator MaterialGeneratorCallback(VRM.glTF_VRM_extensions vrm);
        public delegate void MetaCallback(VRMMetaObject meta);

        public static Task<RuntimeGltfInstance> LoadAsync(string path,
            IAwaitCaller awaitCaller = null,
            MaterialGeneratorCallback materialGeneratorCallback = null,
            MetaCallback metaCallback = null,
            ITextureDeserializer textureDeserializer = null,
            bool loadAnimation = false)
        { throw null; }
    }

    public class glTF_VRM_extensions { }
    public class VRMMetaObject : ScriptableObject { }

    public enum BlendShapePreset
    {
        Unknown,
        Neutral,
        A,
        I,
        U,
        E,
        O,
        Blink,
        Joy,
        Angry,
        Sorrow,
        Fun,
        LookUp,
        LookDown,
        LookLeft,
        LookRight,
        Blink_L,
        Blink_R,
    }

    public struct BlendShapeKey
    {
        public string Name { get { throw null; } }
        public readonly BlendShapePreset Preset;
        public static BlendShapeKey CreateFromPreset(BlendShapePreset preset) { throw null; }
        public static BlendShapeKey CreateFromClip(BlendShapeClip clip) { throw null; }
        public static BlendShapeKey CreateUnknown(string name) { throw null; }
    }

    public class BlendShapeClip : ScriptableObject
    {
        public string BlendShapeName = "";
        public BlendShapePreset Preset;
        public BlendShapeKey Key { get { throw null; } }
    }

    public class BlendShapeAvatar : ScriptableObject
    {
        public List<BlendShapeClip> Clips = new List<BlendShapeClip>();
    }

    public class VRMBlendShapeProxy : MonoBehaviour
    {
        public BlendShapeAvatar BlendShapeAvatar;
        public void ImmediatelySetValue(BlendShapeKey key, float value) { throw null; }
    }

    public class VRMLookAtHead : MonoBehaviour
    {
        public Transform Target;
        public Transform Head;
    }
}
