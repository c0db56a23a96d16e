// Stand-in for UniVRM v0.124.2, assembly VRMShaders.GLTF.IO.Runtime (package
// com.vrmc.vrmshaders, Assets/VRMShaders/GLTF/IO/Runtime/VRMShaders.GLTF.IO.Runtime.asmdef),
// mirroring Assets/VRMShaders/GLTF/IO/Runtime/AwaitCaller/IAwaitCaller.cs,
// RuntimeOnlyAwaitCaller.cs, ImmediateCaller.cs and Texture/Importer/ITextureDeserializer.cs.
// Up to v0.124 the await callers live here, in the VRMShaders namespace. Compile-only.
using System;
using System.Threading.Tasks;

namespace VRMShaders
{
    public interface IAwaitCaller
    {
        Task NextFrame();
        Task Run(Action action);
        Task<T> Run<T>(Func<T> action);
        Task NextFrameIfTimedOut();
    }

    public sealed class RuntimeOnlyAwaitCaller : IAwaitCaller
    {
        public RuntimeOnlyAwaitCaller(float timeOutInSeconds = 1f / 1000f) { throw null; }
        public Task NextFrame() { throw null; }
        public Task Run(Action action) { throw null; }
        public Task<T> Run<T>(Func<T> action) { throw null; }
        public Task NextFrameIfTimedOut() { throw null; }
    }

    public sealed class ImmediateCaller : IAwaitCaller
    {
        public Task NextFrame() { throw null; }
        public Task Run(Action action) { throw null; }
        public Task<T> Run<T>(Func<T> action) { throw null; }
        public Task NextFrameIfTimedOut() { throw null; }
    }

    public interface ITextureDeserializer { }
}
