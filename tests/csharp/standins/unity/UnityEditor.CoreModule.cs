// Stand-in for UnityEditor.CoreModule.dll: the members the package's Editor assembly uses
// (docs.unity3d.com/ScriptReference: MenuItem, MenuCommand, Undo, Selection,
// GameObjectUtility). Compile-only.
using System;

namespace UnityEditor
{
    [AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
    public sealed class MenuItem : Attribute
    {
        public MenuItem(string itemName, bool isValidateFunction, int priority) { throw null; }
    }

    public sealed class MenuCommand
    {
        public UnityEngine.Object context;
    }

    public class Undo
    {
        public static void RegisterCreatedObjectUndo(UnityEngine.Object objectToUndo, string name) { throw null; }
    }

    public sealed class Selection
    {
        public static UnityEngine.Object activeObject { get { throw null; } set { throw null; } }
    }

    public sealed class GameObjectUtility
    {
        public static void SetParentAndAlign(UnityEngine.GameObject child, UnityEngine.GameObject parent) { throw null; }
    }
}
