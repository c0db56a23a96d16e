// Stand-in for UniVRM v0.124.2, assembly UniGLTF.Utils (Assets/UniGLTF/Runtime/Utils/
// UniGLTF.Utils.asmdef), mirroring Assets/UniGLTF/Runtime/Utils/UniGLTFLogger.cs. The
// assembly exists in this layout but holds no await caller yet. Compile-only.
namespace UniGLTF
{
    public static class UniGLTFLogger
    {
        public static void Warning(string msg) { throw null; }
    }
}
