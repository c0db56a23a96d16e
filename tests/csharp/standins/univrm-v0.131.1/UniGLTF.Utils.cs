// Stand-in for UniVRM v0.131.1, assembly UniGLTF.Utils (Packages/UniGLTF/Runtime/Utils/
// UniGLTF.Utils.asmdef), mirroring Packages/UniGLTF/Runtime/Utils/AwaitCaller/IAwaitCaller.cs,
// RuntimeOnlyAwaitCaller.cs and ImmediateCaller.cs. v0.131.1 moved the await callers here
// from the UniGLTF assembly (commit 43bad5636 "mv AwaitCaller to UniGLTF.Utils"); the
// namespace stayed UniGLTF. Compile-only: every body throws.
using System;
using System.Threading.Tasks;

namespace UniGLTF
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
}
