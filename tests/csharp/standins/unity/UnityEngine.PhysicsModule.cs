// Stand-in for UnityEngine.PhysicsModule.dll (built-in package com.unity.modules.physics).
// Compile-only.
namespace UnityEngine
{
    public struct RaycastHit
    {
        public Transform transform { get { throw null; } }
    }

    public class Physics
    {
        public static bool Raycast(Ray ray, out RaycastHit hitInfo) { throw null; }
    }
}
