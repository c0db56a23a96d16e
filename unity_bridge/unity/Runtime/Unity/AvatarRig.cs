// The bones and eyes AvatarDriver moves, found the way each UniVRM wants them moved.
//
// Head: a VRM 1.0 model loaded at run time has a control rig, and Vrm10Instance (execution
// order 11000, after every default script) copies the control rig onto the model's bones in
// its LateUpdate. A turn written to the model's head bone is overwritten every frame, so the
// head to turn is the control rig's. Its local rotation is normalised (identity in T-pose,
// axes of the world), which also makes the same yaw/pitch mean the same on every model.
//
// Eyes: UniVRM's own look-at (Vrm10Instance.LookAtTarget, VRMLookAtHead.Target) follows a
// Transform; the driver hands it the target, or takes it away.
using UnityEngine;
#if AIC_VRM10
using UniVRM10;
#endif
#if AIC_UNIVRM0
using VRM;
#endif

namespace AICompanion.Bridge
{
    /// <summary>Eyes that follow a Transform (null: look ahead).</summary>
    public interface IEyes
    {
        void LookAt(Transform target);
    }

    public static class AvatarRig
    {
        /// <summary>The head Transform whose localRotation the driver may turn, or null.</summary>
        public static Transform Head(GameObject root)
        {
#if AIC_VRM10
            var vrm10 = root.GetComponentInChildren<Vrm10Instance>();
            if (vrm10 != null && vrm10.Vrm != null)
            {
                var rig = vrm10.Runtime.ControlRig;  // null for a model placed in the editor
                if (rig != null) return rig.GetBoneTransform(HumanBodyBones.Head);
                Transform bone;
                return vrm10.TryGetBoneTransform(HumanBodyBones.Head, out bone) ? bone : null;
            }
#endif
            var animator = root.GetComponentInChildren<Animator>();
            return animator != null && animator.isHuman ? animator.GetBoneTransform(HumanBodyBones.Head) : null;
        }

        /// <summary>UniVRM's look-at of the model, or null (no UniVRM, or no look-at).</summary>
        public static IEyes Eyes(GameObject root)
        {
#if AIC_VRM10
            var vrm10 = root.GetComponentInChildren<Vrm10Instance>();
            if (vrm10 != null && vrm10.Vrm != null) return new Vrm10Eyes(vrm10);
#endif
#if AIC_UNIVRM0
            var head = root.GetComponentInChildren<VRMLookAtHead>();
            if (head != null) return new Vrm0Eyes(head);
#endif
            return null;
        }
    }

#if AIC_VRM10
    public sealed class Vrm10Eyes : IEyes
    {
        private readonly Vrm10Instance _vrm;
        public Vrm10Eyes(Vrm10Instance vrm) { _vrm = vrm; }

        public void LookAt(Transform target)
        {
            if (target != null)
            {
                _vrm.LookAtTargetType = VRM10ObjectLookAt.LookAtTargetTypes.SpecifiedTransform;
                _vrm.LookAtTarget = target;
            }
            else
            {
                _vrm.LookAtTargetType = VRM10ObjectLookAt.LookAtTargetTypes.YawPitchValue;
                _vrm.LookAtTarget = null;
                _vrm.Runtime.LookAt.SetYawPitchManually(0f, 0f);  // straight ahead
            }
        }
    }
#endif

#if AIC_UNIVRM0
    public sealed class Vrm0Eyes : IEyes
    {
        private readonly VRMLookAtHead _head;
        public Vrm0Eyes(VRMLookAtHead head) { _head = head; }

        // Without a target VRMLookAtHead leaves the eyes where they were last.
        public void LookAt(Transform target) { _head.Target = target; }
    }
#endif
}
