// Stand-in for UnityEngine.InputLegacyModule.dll: the legacy Input class. In a project whose
// Active Input Handling is "Input System Package (New)" (the Unity 6 template) every call
// throws InvalidOperationException at run time; the package's tests model that by compiling
// without this assembly unless ENABLE_LEGACY_INPUT_MANAGER is defined. Compile-only.
namespace UnityEngine
{
    public class Input
    {
        public static Vector3 mousePosition { get { throw null; } }
        public static bool GetMouseButtonDown(int button) { throw null; }
    }
}
