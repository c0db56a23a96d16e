// Stand-in for UnityEngine.AnimationModule.dll (built-in package com.unity.modules.animation):
// the members the package uses, with Unity's documented signatures. Compile-only.
namespace UnityEngine
{
    public class Animator : Behaviour
    {
        public bool isHuman { get { throw null; } }
        public Avatar avatar { get { throw null; } set { throw null; } }
        public RuntimeAnimatorController runtimeAnimatorController { get { throw null; } set { throw null; } }
        public Transform GetBoneTransform(HumanBodyBones humanBoneId) { throw null; }
    }

    public class RuntimeAnimatorController : Object { }

    public sealed class Avatar : Object { }

    public enum HumanBodyBones
    {
        Hips = 0, LeftUpperLeg = 1, RightUpperLeg = 2, LeftLowerLeg = 3, RightLowerLeg = 4,
        LeftFoot = 5, RightFoot = 6, Spine = 7, Chest = 8, Neck = 9, Head = 10,
        LeftShoulder = 11, RightShoulder = 12, LeftUpperArm = 13, RightUpperArm = 14,
        LeftLowerArm = 15, RightLowerArm = 16, LeftHand = 17, RightHand = 18, LeftToes = 19,
        RightToes = 20, LeftEye = 21, RightEye = 22, Jaw = 23, UpperChest = 54, LastBone = 55,
    }
}
