// Stand-in for UnityEngine.CoreModule.dll: exactly the members the package uses, with the
// namespaces, names and signatures of Unity's Scripting API (docs.unity3d.com/ScriptReference,
// Unity 2021.3 LTS .. Unity 6). Compile-only: every body throws. tests/test_unity_package.py
// compiles the package against it; a member the package uses but this file lacks fails there.
using System;
using System.Collections.Generic;

namespace UnityEngine
{
    public class Object
    {
        public string name { get { throw null; } set { throw null; } }
        public static void Destroy(Object obj) { throw null; }
        public static bool operator ==(Object x, Object y) { throw null; }
        public static bool operator !=(Object x, Object y) { throw null; }
        public static implicit operator bool(Object exists) { throw null; }
        public override bool Equals(object other) { throw null; }
        public override int GetHashCode() { throw null; }
    }

    public class Component : Object
    {
        public GameObject gameObject { get { throw null; } }
        public Transform transform { get { throw null; } }
        public T GetComponent<T>() { throw null; }
        public T GetComponentInChildren<T>() { throw null; }
        public T[] GetComponentsInChildren<T>() { throw null; }
    }

    public class Behaviour : Component
    {
        public bool enabled { get { throw null; } set { throw null; } }
    }

    public class MonoBehaviour : Behaviour { }

    public sealed class GameObject : Object
    {
        public GameObject(string name) { throw null; }
        public Transform transform { get { throw null; } }
        public T AddComponent<T>() where T : Component { throw null; }
        public T GetComponent<T>() { throw null; }
        public T GetComponentInChildren<T>() { throw null; }
        public T[] GetComponentsInChildren<T>() { throw null; }
    }

    public class Transform : Component
    {
        public Vector3 position { get { throw null; } set { throw null; } }
        public Quaternion localRotation { get { throw null; } set { throw null; } }
        public bool IsChildOf(Transform parent) { throw null; }
    }

    public class ScriptableObject : Object { }

    public class Renderer : Component { }

    public class SkinnedMeshRenderer : Renderer
    {
        public Mesh sharedMesh { get { throw null; } set { throw null; } }
        public void SetBlendShapeWeight(int index, float value) { throw null; }
    }

    public sealed class Mesh : Object
    {
        public int blendShapeCount { get { throw null; } }
        public string GetBlendShapeName(int shapeIndex) { throw null; }
    }

    public class Texture : Object { }
    public sealed class Texture2D : Texture { }

    public sealed class Camera : Behaviour
    {
        public static Camera main { get { throw null; } }
        public Ray ScreenPointToRay(Vector3 pos) { throw null; }
    }

    public sealed class Screen
    {
        public static int width { get { throw null; } }
        public static int height { get { throw null; } }
    }

    public sealed class Application
    {
        public static bool isPlaying { get { throw null; } }
    }

    public struct Vector2
    {
        public float x;
        public float y;
        public Vector2(float x, float y) { throw null; }
        public static implicit operator Vector3(Vector2 v) { throw null; }
    }

    public struct Vector3
    {
        public float x;
        public float y;
        public float z;
        public Vector3(float x, float y, float z) { throw null; }
        public static implicit operator Vector2(Vector3 v) { throw null; }
    }

    public struct Quaternion
    {
        public static Quaternion identity { get { throw null; } }
        public static Quaternion Euler(float x, float y, float z) { throw null; }
        public static Quaternion Slerp(Quaternion a, Quaternion b, float t) { throw null; }
        public static Quaternion operator *(Quaternion lhs, Quaternion rhs) { throw null; }
    }

    public struct Ray { }

    public struct Rect
    {
        public Rect(float x, float y, float width, float height) { throw null; }
    }

    public struct Mathf
    {
        public static float Clamp01(float value) { throw null; }
        public static float Clamp(float value, float min, float max) { throw null; }
        public static float Lerp(float a, float b, float t) { throw null; }
        public static float Exp(float power) { throw null; }
        public static float Abs(float f) { throw null; }
        public static float Max(float a, float b) { throw null; }
        public static float Sin(float f) { throw null; }
    }

    public class Time
    {
        public static float time { get { throw null; } }
        public static float deltaTime { get { throw null; } }
    }

    public static class Random
    {
        public static float Range(float minInclusive, float maxInclusive) { throw null; }
    }

    public class Debug
    {
        public static void Log(object message, Object context) { throw null; }
        public static void LogWarning(object message, Object context) { throw null; }
        public static void LogError(object message, Object context) { throw null; }
        public static void LogException(Exception exception, Object context) { throw null; }
    }

    // -- attributes --------------------------------------------------------------------------
    public class PropertyAttribute : Attribute { }

    [AttributeUsage(AttributeTargets.Field, Inherited = true, AllowMultiple = false)]
    public class TooltipAttribute : PropertyAttribute
    {
        public TooltipAttribute(string tooltip) { throw null; }
    }

    [AttributeUsage(AttributeTargets.Field, Inherited = true, AllowMultiple = true)]
    public class HeaderAttribute : PropertyAttribute
    {
        public HeaderAttribute(string header) { throw null; }
    }

    [AttributeUsage(AttributeTargets.Field, Inherited = true, AllowMultiple = false)]
    public sealed class RangeAttribute : PropertyAttribute
    {
        public RangeAttribute(float min, float max) { throw null; }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class SerializeField : Attribute { }

    [AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
    public sealed class AddComponentMenu : Attribute
    {
        public AddComponentMenu(string menuName) { throw null; }
    }

    [AttributeUsage(AttributeTargets.Class, Inherited = false)]
    public sealed class DisallowMultipleComponent : Attribute { }

    [AttributeUsage(AttributeTargets.Class)]
    public class DefaultExecutionOrder : Attribute
    {
        public DefaultExecutionOrder(int order) { throw null; }
    }
}

namespace UnityEngine.Events
{
    public delegate void UnityAction();
    public delegate void UnityAction<T0>(T0 arg0);
    public delegate void UnityAction<T0, T1>(T0 arg0, T1 arg1);

    public abstract class UnityEventBase { }

    [Serializable]
    public class UnityEvent : UnityEventBase
    {
        public void AddListener(UnityAction call) { throw null; }
        public void RemoveListener(UnityAction call) { throw null; }
        public void Invoke() { throw null; }
    }

    [Serializable]
    public abstract class UnityEvent<T0> : UnityEventBase
    {
        public void AddListener(UnityAction<T0> call) { throw null; }
        public void RemoveListener(UnityAction<T0> call) { throw null; }
        public void Invoke(T0 arg0) { throw null; }
    }

    [Serializable]
    public abstract class UnityEvent<T0, T1> : UnityEventBase
    {
        public void AddListener(UnityAction<T0, T1> call) { throw null; }
        public void RemoveListener(UnityAction<T0, T1> call) { throw null; }
        public void Invoke(T0 arg0, T1 arg1) { throw null; }
    }
}
