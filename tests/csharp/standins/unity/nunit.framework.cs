// Stand-in for nunit.framework.dll (NUnit 3.x as shipped with com.unity.test-framework): the
// attributes and asserts the package's edit-mode tests use, with NUnit's names and
// signatures. Unlike the other stand-ins these work, so tests/csharp/EditModeRunner.cs can
// run the tests' pure logic under Mono.
using System;
using System.Collections;
using System.Collections.Generic;

namespace NUnit.Framework
{
    public delegate void TestDelegate();

    [AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = true)]
    public class TestFixtureAttribute : Attribute { }

    [AttributeUsage(AttributeTargets.Method, AllowMultiple = false, Inherited = true)]
    public class TestAttribute : Attribute { }

    [AttributeUsage(AttributeTargets.Method, AllowMultiple = true, Inherited = false)]
    public class TestCaseAttribute : Attribute
    {
        public object[] Arguments { get; private set; }
        public TestCaseAttribute(params object[] arguments) { Arguments = arguments ?? new object[] { null }; }
        public TestCaseAttribute(object arg) { Arguments = new[] { arg }; }
        public TestCaseAttribute(object arg1, object arg2) { Arguments = new[] { arg1, arg2 }; }
        public TestCaseAttribute(object arg1, object arg2, object arg3) { Arguments = new[] { arg1, arg2, arg3 }; }
    }

    public class AssertionException : Exception
    {
        public AssertionException(string message) : base(message) { }
    }

    public abstract class Assert
    {
        private static void Fail(string what, string message, object[] args)
        {
            string extra = string.IsNullOrEmpty(message) ? "" : " (" + string.Format(message, args ?? new object[0]) + ")";
            throw new AssertionException(what + extra);
        }

        private static bool NumEqual(object a, object b)
        {
            if (a is IConvertible && b is IConvertible && !(a is string) && !(b is string) && !(a is bool) && !(b is bool)
                && !(a is Enum) && !(b is Enum))
            {
                try { return Convert.ToDouble(a) == Convert.ToDouble(b); }
                catch (FormatException) { return false; }
                catch (InvalidCastException) { return false; }
            }
            return Equals(a, b);
        }

        public static void AreEqual(object expected, object actual) { AreEqual(expected, actual, null); }
        public static void AreEqual(object expected, object actual, string message, params object[] args)
        {
            if (!NumEqual(expected, actual)) Fail("expected <" + expected + "> but was <" + actual + ">", message, args);
        }

        public static void IsTrue(bool condition) { IsTrue(condition, null); }
        public static void IsTrue(bool condition, string message, params object[] args)
        {
            if (!condition) Fail("expected true", message, args);
        }

        public static void IsFalse(bool condition) { IsFalse(condition, null); }
        public static void IsFalse(bool condition, string message, params object[] args)
        {
            if (condition) Fail("expected false", message, args);
        }

        public static void IsNull(object anObject) { IsNull(anObject, null); }
        public static void IsNull(object anObject, string message, params object[] args)
        {
            if (anObject != null) Fail("expected null but was <" + anObject + ">", message, args);
        }

        public static void IsNotNull(object anObject) { IsNotNull(anObject, null); }
        public static void IsNotNull(object anObject, string message, params object[] args)
        {
            if (anObject == null) Fail("expected not null", message, args);
        }

        public static void Greater(float arg1, float arg2) { if (!(arg1 > arg2)) Fail(arg1 + " is not greater than " + arg2, null, null); }
        public static void Greater(double arg1, double arg2) { if (!(arg1 > arg2)) Fail(arg1 + " is not greater than " + arg2, null, null); }
        public static void Less(float arg1, float arg2) { if (!(arg1 < arg2)) Fail(arg1 + " is not less than " + arg2, null, null); }
        public static void Less(double arg1, double arg2) { if (!(arg1 < arg2)) Fail(arg1 + " is not less than " + arg2, null, null); }

        public static TActual Throws<TActual>(TestDelegate code) where TActual : Exception
        {
            try { code(); }
            catch (Exception e)
            {
                if (e.GetType() == typeof(TActual)) return (TActual)e;
                Fail("expected " + typeof(TActual).Name + " but got " + e.GetType().Name + ": " + e.Message, null, null);
            }
            Fail("expected " + typeof(TActual).Name + " but nothing was thrown", null, null);
            return null;
        }
    }

    public abstract class CollectionAssert
    {
        public static void AreEqual(IEnumerable expected, IEnumerable actual)
        {
            var a = new List<object>();
            foreach (object o in expected) a.Add(o);
            var b = new List<object>();
            foreach (object o in actual) b.Add(o);
            bool same = a.Count == b.Count;
            for (int i = 0; same && i < a.Count; i++) same = Equals(a[i], b[i]);
            if (!same)
                throw new AssertionException("expected [" + string.Join(", ", a) + "] but was [" + string.Join(", ", b) + "]");
        }
    }
}
