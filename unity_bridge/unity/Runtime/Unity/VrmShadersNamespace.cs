// UniVRM up to 0.124 keeps IAwaitCaller and RuntimeOnlyAwaitCaller in the VRMShaders namespace
// (assembly VRMShaders.GLTF.IO.Runtime); 0.125 moved them to UniGLTF (assembly UniGLTF, then
// UniGLTF.Utils from 0.131.1). ExpressionTargets.cs says `using UniGLTF; using VRMShaders;` so
// one source compiles against both; this declaration keeps `using VRMShaders;` valid where the
// namespace no longer exists. The class is internal and empty: it adds nothing to VRMShaders.
#if AIC_VRM10 || AIC_UNIVRM0
namespace VRMShaders
{
    internal static class AICompanionNamespaceAnchor { }
}
#endif
