// Stand-in for UniVRM v0.124.2, assembly UniGLTF (Assets/UniGLTF/Runtime/UniGLTF.asmdef),
// mirroring Assets/UniGLTF/Runtime/UniGLTF/RuntimeGltfInstance.cs and
// IO/MaterialIO/IMaterialDescriptorGenerator.cs. Compile-only.
using UnityEngine;

namespace UniGLTF
{
    public interface IMaterialDescriptorGenerator { }

    public class RuntimeGltfInstance : MonoBehaviour
    {
        public void ShowMeshes() { throw null; }
    }
}
