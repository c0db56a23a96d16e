// Edit-mode tests of the expression mapping: wire names to UniVRM 1.0 and 0.x presets (the
// one table), custom names in any case, and the goals after a reconnect. Run them in Unity's
// Test Runner (add the package to "testables" in Packages/manifest.json); the back end's CI
// compiles and runs them under Mono against stand-ins of UnityEngine and UniVRM.
using System;
using System.Collections.Generic;
using AICompanion.Bridge.Protocol;
using NUnit.Framework;
#if AIC_VRM10
using UniVRM10;
#endif
#if AIC_UNIVRM0
using VRM;
#endif

namespace AICompanion.Bridge.Tests
{
    public class ExpressionMapTests
    {
        [TestCase("joy", "happy", "Joy")]
        [TestCase("sorrow", "sad", "Sorrow")]
        [TestCase("fun", "relaxed", "Fun")]
        [TestCase("aa", "aa", "A")]
        [TestCase("oh", "oh", "O")]
        [TestCase("blink_l", "blinkLeft", "Blink_L")]
        [TestCase("blink_r", "blinkRight", "Blink_R")]
        [TestCase("lookup", "lookUp", "LookUp")]
        public void WireNamesMapToBothPresets(string wire, string vrm10, string vrm0)
        {
            Assert.AreEqual(vrm10, ExpressionMap.Vrm10Preset(wire));
            Assert.AreEqual(vrm0, ExpressionMap.Vrm0Preset(wire));
            Assert.AreEqual(wire, ExpressionMap.WireForVrm10(vrm10));
            Assert.AreEqual(wire, ExpressionMap.WireForVrm0(vrm0));
        }

        [TestCase("Joy", "joy")]
        [TestCase("happy", "joy")]
        [TestCase("A", "aa")]
        [TestCase("blinkLeft", "blink_l")]
        [TestCase("Blink_L", "blink_l")]
        [TestCase("Surprised", "surprised")]
        [TestCase("MyCustom", "mycustom")]
        public void AnySpellingBecomesTheWireName(string name, string wire)
        {
            Assert.AreEqual(wire, ExpressionMap.Canonical(name));
        }

        [Test]
        public void SurprisedHasNoVrm0PresetSoTheModelsOwnClipIsFoundInAnyCase()
        {
            Assert.IsNull(ExpressionMap.Vrm0Preset("surprised"));
            var vroid = new List<string> { "Extra", "Surprised" };
            Assert.AreEqual("Surprised", ExpressionMap.FindModelName("surprised", vroid));
            Assert.IsNull(ExpressionMap.FindModelName("sleepy", vroid));
            var both = new List<string> { "SMILE", "smile" };
            Assert.AreEqual("smile", ExpressionMap.FindModelName("smile", both));  // exact first
        }

        [Test]
        public void TheTableIsComplete()
        {
            Assert.AreEqual(ExpressionMap.Wire.Length, ExpressionMap.Vrm10.Length);
            Assert.AreEqual(ExpressionMap.Wire.Length, ExpressionMap.Vrm0.Length);
            foreach (string v in ExpressionMap.Visemes)
                Assert.IsNotNull(ExpressionMap.Vrm0Preset(v), v + " must set a VRM 0.x vowel");
        }

#if AIC_VRM10
        [Test]
        public void EveryVrm10NameIsAnExpressionPreset()
        {
            foreach (string name in ExpressionMap.Vrm10)
                Assert.IsTrue(Enum.IsDefined(typeof(ExpressionPreset), name), name);
        }
#endif

#if AIC_UNIVRM0
        [Test]
        public void EveryVrm0NameIsABlendShapePreset()
        {
            foreach (string name in ExpressionMap.Vrm0)
                if (name.Length > 0) Assert.IsTrue(Enum.IsDefined(typeof(BlendShapePreset), name), name);
        }

        [TestCase("aa", BlendShapePreset.A)]
        [TestCase("blink_l", BlendShapePreset.Blink_L)]
        [TestCase("blink_r", BlendShapePreset.Blink_R)]
        [TestCase("joy", BlendShapePreset.Joy)]
        public void Vrm0TargetResolvesPresets(string wire, BlendShapePreset expected)
        {
            BlendShapePreset preset;
            Assert.IsTrue(Vrm0Target.TryPreset(wire, out preset), wire);
            Assert.AreEqual(expected, preset);
        }

        [Test]
        public void Vrm0TargetHasNoPresetForSurprisedOrCustomNames()
        {
            BlendShapePreset preset;
            Assert.IsFalse(Vrm0Target.TryPreset("surprised", out preset));
            Assert.IsFalse(Vrm0Target.TryPreset("mycustom", out preset));
        }
#endif

        [Test]
        public void WelcomeZeroesExpressionsSetBefore()
        {
            var goal = new Dictionary<string, float> { { "joy", 0.8f }, { "angry", 0.5f } };
            AvatarDriver.ApplyWelcomeExpressions(goal, new Dictionary<string, object> { { "sorrow", 0.25 }, { "Angry", 2L } });
            Assert.AreEqual(0f, goal["joy"]);
            Assert.AreEqual(1f, goal["angry"]);
            Assert.AreEqual(0.25f, goal["sorrow"]);
        }
    }
}
