// Stand-in for UniVRM v0.131.1, assembly UniGLTF (Packages/UniGLTF/Runtime/UniGLTF.asmdef),
// mirroring Packages/UniGLTF/Runtime/UniGLTF/RuntimeGltfInstance.cs,
// IO/TextureIO/Import/ITextureDeserializer.cs, IO/MaterialIO/Import/
// IMaterialDescriptorGenerator.cs and IO/ImporterContextSettings.cs: the types the package
// uses, and those in the signatures of the loaders it calls. Compile-only.
using UnityEngine;

namespace UniGLTF
{
    public interface ITextureDeserializer { }
    public interface IMaterialDescriptorGenerator { }

    public class ImporterContextSettings
    {
        public ImporterContextSettings(bool loadAnimation = true, Axes invertAxis = Axes.Z) { throw null; }
    }

    public enum Axes { X, Z }

    public class RuntimeGltfInstance : MonoBehaviour
    {
        public void ShowMeshes() { throw null; }
    }
}
