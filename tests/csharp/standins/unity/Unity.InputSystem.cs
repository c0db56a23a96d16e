// Stand-in for Unity.InputSystem.dll (package com.unity.inputsystem 1.x): the members the
// sample uses (docs.unity3d.com/Packages/com.unity.inputsystem@1.7/api). Compile-only.
using UnityEngine.InputSystem.Controls;

namespace UnityEngine.InputSystem
{
    public abstract class InputControl { }

    public abstract class InputControl<TValue> : InputControl where TValue : struct
    {
        public TValue ReadValue() { throw null; }
    }

    public class InputDevice : InputControl { }

    public class Pointer : InputDevice
    {
        public Vector2Control position { get { throw null; } }
    }

    public class Mouse : Pointer
    {
        public static Mouse current { get { throw null; } }
        public ButtonControl leftButton { get { throw null; } }
    }
}

namespace UnityEngine.InputSystem.Controls
{
    public class AxisControl : InputControl<float> { }

    public class ButtonControl : AxisControl
    {
        public bool wasPressedThisFrame { get { throw null; } }
    }

    public class Vector2Control : InputControl<Vector2> { }
}
