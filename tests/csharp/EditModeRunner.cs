// Runs the package's edit-mode tests (Tests/Editor) under Mono, the way Unity's Test Runner
// would: every public method with [Test], and one run per [TestCase]. It prints a line per
// test and a summary; the exit code is the number of failures. tests/test_unity_package.py
// compiles it with the tests, the package and the stand-ins.
using System;
using System.Linq;
using System.Reflection;
using NUnit.Framework;

public static class EditModeRunner
{
    public static int Main(string[] args)
    {
        Assembly tests = Assembly.LoadFrom(args[0]);
        int passed = 0, failed = 0;
        foreach (Type type in tests.GetTypes().Where(t => t.IsClass && t.IsPublic).OrderBy(t => t.FullName))
        {
            foreach (MethodInfo method in type.GetMethods().OrderBy(m => m.Name))
            {
                var cases = method.GetCustomAttributes(typeof(TestCaseAttribute), false)
                    .Cast<TestCaseAttribute>().Select(c => c.Arguments).ToList();
                if (method.GetCustomAttributes(typeof(TestAttribute), false).Length > 0) cases.Add(new object[0]);
                foreach (object[] arguments in cases)
                {
                    string name = type.Name + "." + method.Name + (arguments.Length > 0 ? "(" + string.Join(", ", arguments) + ")" : "");
                    try
                    {
                        method.Invoke(Activator.CreateInstance(type), arguments);
                        Console.WriteLine("PASS " + name);
                        passed++;
                    }
                    catch (TargetInvocationException e)
                    {
                        Console.WriteLine("FAIL " + name + ": " + e.InnerException.GetType().Name + ": " + e.InnerException.Message);
                        failed++;
                    }
                }
            }
        }
        Console.WriteLine("TESTS " + passed + " passed, " + failed + " failed");
        return failed;
    }
}
