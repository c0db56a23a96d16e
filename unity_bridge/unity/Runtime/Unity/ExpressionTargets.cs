// Where expression weights go: UniVRM 1.0 (Vrm10Instance), UniVRM 0.x (VRMBlendShapeProxy), or
// plain blend shapes of any SkinnedMeshRenderer as a fallback. The VRM adapters compile only when
// their package is installed (asmdef versionDefines set AIC_VRM10 / AIC_UNIVRM0).
using System;
using System.Collections.Generic;
using System.Threading.Tasks;
using UnityEngine;
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
        IList<string> Names { get; }
        void Set(string name, float weight);
    }

    public static class ExpressionTargets
    {
        /// <summary>The wire's names (VRM 0.x presets) mapped to VRM 1.0 presets.</summary>
        public static readonly Dictionary<string, string> ToVrm10 = new Dictionary<string, string>
        {
            { "joy", "happy" }, { "angry", "angry" }, { "sorrow", "sad" }, { "fun", "relaxed" },
            { "surprised", "surprised" }, { "neutral", "neutral" }, { "blink", "blink" },
            { "blink_l", "blinkLeft" }, { "blink_r", "blinkRight" }, { "a", "aa" }, { "i", "ih" },
            { "u", "ou" }, { "e", "ee" }, { "o", "oh" }, { "aa", "aa" }, { "ih", "ih" },
            { "ou", "ou" }, { "ee", "ee" }, { "oh", "oh" },
        };

        /// <summary>The best target for a model: VRM 1.0, VRM 0.x, else blend shapes.</summary>
        public static IExpressionTarget For(GameObject root)
        {
#if AIC_VRM10
            var vrm10 = root.GetComponentInChildren<Vrm10Instance>();
            if (vrm10 != null) return new Vrm10Target(vrm10);
#endif
#if AIC_UNIVRM0
            var proxy = root.GetComponentInChildren<VRMBlendShapeProxy>();
            if (proxy != null) return new Vrm0Target(proxy);
#endif
            return new BlendShapeTarget(root);
        }

        /// <summary>Load a .vrm file at run time with whichever UniVRM is installed.</summary>
        public static async Task<GameObject> LoadModelAsync(string path)
        {
#if AIC_VRM10
            Vrm10Instance instance = await Vrm10.LoadPathAsync(path);  // VRM 0.x files too
            if (instance == null) throw new InvalidOperationException("UniVRM could not load " + path);
            return instance.gameObject;
#elif AIC_UNIVRM0
            var instance = await VrmUtility.LoadAsync(path);
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
        private readonly List<string> _names = new List<string>(ExpressionTargets.ToVrm10.Keys);

        public Vrm10Target(Vrm10Instance vrm) { _vrm = vrm; }

        public IList<string> Names { get { return _names; } }

        public void Set(string name, float weight)
        {
            string preset;
            ExpressionPreset p;
            ExpressionKey key = ExpressionTargets.ToVrm10.TryGetValue(name, out preset)
                && Enum.TryParse(preset, out p)
                ? ExpressionKey.CreateFromPreset(p)
                : ExpressionKey.CreateCustom(name);
            _vrm.Runtime.Expression.SetWeight(key, weight);
        }
    }
#endif

#if AIC_UNIVRM0
    public sealed class Vrm0Target : IExpressionTarget
    {
        private readonly VRMBlendShapeProxy _proxy;
        private readonly List<string> _names = new List<string>(ExpressionTargets.ToVrm10.Keys);

        public Vrm0Target(VRMBlendShapeProxy proxy) { _proxy = proxy; }

        public IList<string> Names { get { return _names; } }

        public void Set(string name, float weight)
        {
            BlendShapePreset preset;
            string pascal = name.Length > 0 ? char.ToUpperInvariant(name[0]) + name.Substring(1) : name;
            BlendShapeKey key = Enum.TryParse(pascal, out preset) && preset != BlendShapePreset.Unknown
                ? BlendShapeKey.CreateFromPreset(preset)
                : BlendShapeKey.CreateUnknown(name);
            _proxy.ImmediatelySetValue(key, weight);
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
