// How a wire expression name finds its expression on a model: the one table (generated into
// MessageTypes.g.cs from the back end's registry) from wire names to UniVRM's VRM 1.0 and
// VRM 0.x presets, and case-insensitive matching of custom names. No UnityEngine, no UniVRM:
// the adapters in Runtime/Unity turn the preset names into UniVRM keys.
using System;
using System.Collections.Generic;

namespace AICompanion.Bridge.Protocol
{
    public static partial class ExpressionMap
    {
        private static Dictionary<string, int> _index;

        private static Dictionary<string, int> Index
        {
            get
            {
                if (_index != null) return _index;
                var index = new Dictionary<string, int>(StringComparer.Ordinal);
                for (int i = 0; i < Wire.Length; i++) index[Wire[i]] = i;
                // The VRM 1.0 and 0.x spellings are accepted too, lowercased: happy, a, blinkleft.
                for (int i = 0; i < Wire.Length; i++)
                {
                    string v10 = Vrm10[i].ToLowerInvariant(), v0 = Vrm0[i].ToLowerInvariant();
                    if (!index.ContainsKey(v10)) index[v10] = i;
                    if (v0.Length > 0 && !index.ContainsKey(v0)) index[v0] = i;
                }
                _index = index;
                return index;
            }
        }

        /// <summary>The wire's name for any spelling of a table entry (Joy, happy, A, blinkLeft),
        /// else the name lowercased: what the bridge sends for it.</summary>
        public static string Canonical(string name)
        {
            if (string.IsNullOrEmpty(name)) return "";
            string key = name.Trim().ToLowerInvariant();
            int i;
            return Index.TryGetValue(key, out i) ? Wire[i] : key;
        }

        /// <summary>The UniVRM10.ExpressionPreset member name for a wire name, or null (custom).</summary>
        public static string Vrm10Preset(string wire)
        {
            int i;
            return Index.TryGetValue(Canonical(wire), out i) ? Vrm10[i] : null;
        }

        /// <summary>The VRM.BlendShapePreset member name for a wire name, or null: no 0.x preset
        /// (surprised), or a custom name.</summary>
        public static string Vrm0Preset(string wire)
        {
            int i;
            return Index.TryGetValue(Canonical(wire), out i) && Vrm0[i].Length > 0 ? Vrm0[i] : null;
        }

        /// <summary>The wire name of a VRM 1.0 preset (happy -> joy); null for custom.</summary>
        public static string WireForVrm10(string preset)
        {
            int i = Array.IndexOf(Vrm10, preset);
            return i >= 0 ? Wire[i] : null;
        }

        /// <summary>The wire name of a VRM 0.x preset (A -> aa); null for Unknown or custom.</summary>
        public static string WireForVrm0(string preset)
        {
            int i = string.IsNullOrEmpty(preset) ? -1 : Array.IndexOf(Vrm0, preset);
            return i >= 0 ? Wire[i] : null;
        }

        /// <summary>The model's own spelling of a name, matched in any case ("surprised" finds
        /// VRoid's "Surprised"), or null when the model has none.</summary>
        public static string FindModelName(string name, IEnumerable<string> modelNames)
        {
            if (string.IsNullOrEmpty(name) || modelNames == null) return null;
            string exact = null, folded = null;
            foreach (string candidate in modelNames)
            {
                if (candidate == null) continue;
                if (candidate == name) exact = candidate;
                else if (folded == null && string.Equals(candidate, name, StringComparison.OrdinalIgnoreCase))
                    folded = candidate;
            }
            return exact ?? folded;
        }

        /// <summary>True for aa, ih, ou, ee, oh.</summary>
        public static bool IsViseme(string shape)
        {
            return Array.IndexOf(Visemes, shape) >= 0;
        }
    }
}
