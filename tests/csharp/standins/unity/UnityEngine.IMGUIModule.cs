// Stand-in for UnityEngine.IMGUIModule.dll (built-in package com.unity.modules.imgui).
// Compile-only.
namespace UnityEngine
{
    public class GUI
    {
        public static void Label(Rect position, string text) { throw null; }
        public static void Box(Rect position, string text) { throw null; }
    }
}
