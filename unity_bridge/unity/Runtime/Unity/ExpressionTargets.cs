// Where expression weights go: UniVRM 1.0 (Vrm10Instance), UniVRM 0.x (VRMBlendShapeProxy), or
// plain blend shapes of any SkinnedMeshRenderer as a fallback. Wire names go through the one
// table (ExpressionMap, generated from the back end's registry); a name not in it is a custom
// expression of the model, matched in any case. The VRM adapters compile only when their
// package is installed (asmdef versionDefines set AIC_VRM10 / AIC_UNIVRM0).
using System;
using System.Collections.Generic;
using System.Threading.Tasks;
using AICompanion.Bridge.Protocol;
using UnityEngine;
#if AIC_VRM10 || AIC_UNIVRM0
using UniGLTF;      // IAwaitCaller and RuntimeOnlyAwaitCaller from UniVRM 0.125 on
using VRMShaders;   // ... and up to 0.124 (see VrmShadersNamespace.cs)
#endif
#if AIC_VRM10
using UniVRM10;
#endif
#if AIC_UNIVRM0
using VRM;
#endif

namespace AICompanion.Bridge
{
    /// <summary>Applies expression weights (0..1) by wire name: joy, angry, sorrow, fun,
    /// surprised, neutral, blink, aa, ... or a custom name.</summary>
    public interface IExpressionTarget
    {
        /// <summary>The model's own expressions, by wire name (custom ones as the model spells them).</summary>
        IList<string> Names { get; }
        void Set(string name, float weight);
    }

    public static class ExpressionTargets
    {
        /// <summary>The best target for a model: VRM 1.0, VRM 0.x, else blend shapes.</summary>
        public static IExpressionTarget For(GameObject root)
        {
#if AIC_VRM10
            var vrm10 = root.GetComponentInChildren<Vrm10Instance>();
            if (vrm10 != null && vrm10.Vrm != null) return new Vrm10Target(vrm10);
#endif
#if AIC_UNIVRM0
            var proxy = root.GetComponentInChildren<VRMBlendShapeProxy>();
            if (proxy != null && proxy.BlendShapeAvatar != null) return new Vrm0Target(proxy);
#endif
            return new BlendShapeTarget(root);
        }

        /// <summary>Load a .vrm file at run time with whichever UniVRM is installed, without
        /// blocking the main thread (UniVRM's RuntimeOnlyAwaitCaller spreads the work over
        /// frames; without one, UniVRM 0.x loads synchronously).</summary>
        public static async Task<GameObject> LoadModelAsync(string path)
        {
#if AIC_VRM10
            // The control rig stays: AvatarDriver turns the head through it (AvatarRig).
            Vrm10Instance instance = await Vrm10.LoadPathAsync(path, canLoadVrm0X: true,
                awaitCaller: new RuntimeOnlyAwaitCaller());
            if (instance == null) throw new InvalidOperationException("UniVRM could not load " + path);
            return instance.gameObject;
#elif AIC_UNIVRM0
            RuntimeGltfInstance instance = await VrmUtility.LoadAsync(path, new RuntimeOnlyAwaitCaller());
            instance.ShowMeshes();
            return instance.gameObject;
#else
            await Task.Yield();
            throw new NotSupportedException("loading .vrm files needs UniVRM (com.vrmc.vrm or " +
                                            "com.vrmc.univrm); see the package README");
#endif
        }
    }

#if AIC_VRM10
    public sealed class Vrm10Target : IExpressionTarget
    {
        private readonly Vrm10Instance _vrm;
        private readonly List<string> _names = new List<string>();
        private readonly List<string> _custom = new List<string>();

        public Vrm10Target(Vrm10Instance vrm)
        {
            _vrm = vrm;
            foreach (ExpressionKey key in vrm.Runtime.Expression.ExpressionKeys)
            {
                if (key.Preset == ExpressionPreset.custom) { _custom.Add(key.Name); _names.Add(key.Name); }
                else _names.Add(ExpressionMap.WireForVrm10(key.Preset.ToString()) ?? key.Preset.ToString());
            }
        }

        public IList<string> Names { get { return _names; } }

        public void Set(string name, float weight)
        {
            _vrm.Runtime.Expression.SetWeight(KeyFor(name, _custom), weight);
        }

        /// <summary>The key a wire name sets: a custom expression of the model with that name
        /// (any case) first, so a model that calls its own "Surprised" gets it; else the preset
        /// of the table; else a custom key (UniVRM ignores one the model lacks).</summary>
        public static ExpressionKey KeyFor(string name, IEnumerable<string> customNames)
        {
            string custom = ExpressionMap.FindModelName(name, customNames);
            if (custom != null) return ExpressionKey.CreateCustom(custom);
            ExpressionPreset preset;
            string presetName = ExpressionMap.Vrm10Preset(name);
            if (presetName != null && Enum.TryParse(presetName, false, out preset))
                return ExpressionKey.CreateFromPreset(preset);
            return ExpressionKey.CreateCustom(name);
        }
    }
#endif

#if AIC_UNIVRM0
    public sealed class Vrm0Target : IExpressionTarget
    {
        private readonly VRMBlendShapeProxy _proxy;
        private readonly List<string> _names = new List<string>();
        private readonly List<string> _custom = new List<string>();

        public Vrm0Target(VRMBlendShapeProxy proxy)
        {
            _proxy = proxy;
            foreach (BlendShapeClip clip in proxy.BlendShapeAvatar.Clips)
            {
                if (clip == null) continue;
                if (clip.Preset == BlendShapePreset.Unknown) { _custom.Add(clip.BlendShapeName); _names.Add(clip.BlendShapeName); }
                else _names.Add(ExpressionMap.WireForVrm0(clip.Preset.ToString()) ?? clip.Preset.ToString());
            }
        }

        public IList<string> Names { get { return _names; } }

        public void Set(string name, float weight)
        {
            _proxy.ImmediatelySetValue(KeyFor(name, _custom), weight);
        }

        /// <summary>The key a wire name sets: the table's preset (aa -> A, blink_l -> Blink_L),
        /// else the model's custom clip of that name in any case (surprised -> "Surprised").</summary>
        public static BlendShapeKey KeyFor(string name, IEnumerable<string> customNames)
        {
            BlendShapePreset preset;
            if (TryPreset(name, out preset)) return BlendShapeKey.CreateFromPreset(preset);
            string custom = ExpressionMap.FindModelName(name, customNames);
            return BlendShapeKey.CreateUnknown(custom ?? name);
        }

        /// <summary>The BlendShapePreset of a wire name, by the table (exact member names).</summary>
        public static bool TryPreset(string name, out BlendShapePreset preset)
        {
            string presetName = ExpressionMap.Vrm0Preset(name);
            preset = BlendShapePreset.Unknown;
            return presetName != null && Enum.TryParse(presetName, false, out preset)
                && preset != BlendShapePreset.Unknown;
        }
    }
#endif

    /// <summary>No UniVRM: blend shapes named like the expression (case-insensitive), alone or
    /// as the last part of the name: "joy", "Face.Joy", "Fcl_ALL_Joy".</summary>
    public sealed class BlendShapeTarget : IExpressionTarget
    {
        private readonly List<KeyValuePair<SkinnedMeshRenderer, int>> _all = new List<KeyValuePair<SkinnedMeshRenderer, int>>();
        private readonly Dictionary<string, List<KeyValuePair<SkinnedMeshRenderer, int>>> _cache =
            new Dictionary<string, List<KeyValuePair<SkinnedMeshRenderer, int>>>();
        private readonly List<string> _names = new List<string>();

        public BlendShapeTarget(GameObject root)
        {
            foreach (var smr in root.GetComponentsInChildren<SkinnedMeshRenderer>())
            {
                if (smr.sharedMesh == null) continue;
                for (int i = 0; i < smr.sharedMesh.blendShapeCount; i++)
                {
                    _all.Add(new KeyValuePair<SkinnedMeshRenderer, int>(smr, i));
                    _names.Add(smr.sharedMesh.GetBlendShapeName(i));
                }
            }
        }

        public IList<string> Names { get { return _names; } }

        public void Set(string name, float weight)
        {
            List<KeyValuePair<SkinnedMeshRenderer, int>> hits;
            if (!_cache.TryGetValue(name, out hits))
            {
                hits = new List<KeyValuePair<SkinnedMeshRenderer, int>>();
                foreach (var pair in _all)
                {
                    if (Matches(pair.Key.sharedMesh.GetBlendShapeName(pair.Value), name)) hits.Add(pair);
                }
                _cache[name] = hits;
            }
            foreach (var pair in hits) pair.Key.SetBlendShapeWeight(pair.Value, weight * 100f);
        }

        public static bool Matches(string shape, string name)
        {
            if (string.Equals(shape, name, StringComparison.OrdinalIgnoreCase)) return true;
            if (shape.Length <= name.Length) return false;
            char sep = shape[shape.Length - name.Length - 1];
            return (sep == '_' || sep == '.' || sep == ' ')
                && shape.EndsWith(name, StringComparison.OrdinalIgnoreCase);
        }
    }
}
