// Edit-mode tests of the engine-free protocol code: msgpack, envelope and framing, the
// viseme player, and draining a stopped connection.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using AICompanion.Bridge.Protocol;
using NUnit.Framework;

namespace AICompanion.Bridge.Tests
{
    public class ProtocolTests
    {
        [Test]
        public void EnvelopeRoundTripsThroughAFrame()
        {
            var env = new Envelope(MessageTypes.SetExpression,
                new Dictionary<string, object> { { "name", "joy" }, { "value", 0.5 } }, 7);
            var stream = new MemoryStream(Framing.Frame(env.Encode()));
            Envelope back = Envelope.Decode(Framing.ReadFrame(stream, ProtocolInfo.DefaultMaxFrame));
            Assert.AreEqual(MessageTypes.SetExpression, back.Type);
            Assert.AreEqual(7L, back.Id.Value);
            Assert.AreEqual("joy", back.GetString("name"));
            Assert.AreEqual(0.5, back.GetDouble("value"));
            Assert.IsNull(Framing.ReadFrame(stream, ProtocolInfo.DefaultMaxFrame));  // clean end
        }

        [Test]
        public void AnOversizedFrameIsRefusedBeforeAllocating()
        {
            var stream = new MemoryStream(new byte[] { 0x7f, 0xff, 0xff, 0xff });
            Assert.Throws<ProtocolException>(() => Framing.ReadFrame(stream, 1024));
        }

        [Test]
        public void VisemesPlayInOrderAtTheirPace()
        {
            var player = new VisemePlayer { SecondsPerShape = 0.1, CatchUpAt = 100 };
            player.Enqueue(new List<object> { "aa", "oh", "bogus", "sil", "ee" });
            Assert.AreEqual(4, player.Queued);  // unknown shapes are dropped
            var seen = new List<string>();
            for (int i = 0; i < 40; i++)
            {
                player.Tick(0.02);
                if (player.Current != null && (seen.Count == 0 || seen[seen.Count - 1] != player.Current))
                    seen.Add(player.Current);
            }
            CollectionAssert.AreEqual(new[] { "aa", "oh", "sil", "ee" }, seen);
            Assert.IsNull(player.Current);
            for (int i = 0; i < 50; i++) player.Tick(0.02);
            Assert.IsFalse(player.Active);  // the mouth closed
            Assert.AreEqual(0f, player.Weight("ee"));
        }

        [Test]
        public void AVisemeOpensItsShapeAndNoOther()
        {
            var player = new VisemePlayer { SecondsPerShape = 1 };
            player.Enqueue(new List<object> { "ou" });
            for (int i = 0; i < 20; i++) player.Tick(0.02);
            Assert.Greater(player.Weight("ou"), 0.9f);
            Assert.AreEqual(0f, player.Weight("aa"));
        }

        [Test]
        public void APlayerFarBehindCatchesUp()
        {
            var player = new VisemePlayer { SecondsPerShape = 0.1, CatchUpAt = 8, MaxQueued = 64 };
            var many = new List<object>();
            for (int i = 0; i < 200; i++) many.Add(i % 2 == 0 ? "aa" : "ih");
            player.Enqueue(many);
            Assert.AreEqual(64, player.Queued);  // the oldest were dropped
            double t = 0;
            while (player.Current != null || player.Queued > 0) { player.Tick(0.02); t += 0.02; }
            Assert.Less(t, 64 * 0.1 * 0.5);  // well under the normal pace
        }

        [Test]
        public void AStoppedConnectionHandsOutNothingAndDoesNotRestart()
        {
            var conn = new BridgeConnection("127.0.0.1", 1, "test");
            int handled = 0;
            conn.Stop();  // never blocks, even before Start
            Assert.AreEqual(0, conn.Drain(10, ev => handled++));
            Assert.IsTrue(conn.IsStopped);
            Assert.Throws<InvalidOperationException>(() => conn.Start());
            Assert.AreEqual(0, handled);
        }
        [Test]
        public void AHandlerThatStopsTheConnectionEndsTheDrainCleanly()
        {
            var conn = new BridgeConnection("127.0.0.1", 1, "test");
            for (int i = 0; i < 5; i++)
                conn.Post(new BridgeEvent { Kind = BridgeEventKind.Message, Envelope = new Envelope(MessageTypes.Speech) });
            int handled = 0;
            int n = conn.Drain(10, ev => { handled++; conn.Stop(); });  // like Disconnect in a handler
            Assert.AreEqual(1, n);
            Assert.AreEqual(1, handled);
            Assert.AreEqual(0, conn.Drain(10, ev => handled++));
        }

        [Test]
        public void AThrowingHandlerDoesNotStopTheOthers()
        {
            var conn = new BridgeConnection("127.0.0.1", 1, "test");
            for (int i = 0; i < 3; i++)
                conn.Post(new BridgeEvent { Kind = BridgeEventKind.Message, Envelope = new Envelope(MessageTypes.Mouth) });
            var errors = new List<Exception>();
            int n = conn.Drain(10, ev => { throw new InvalidOperationException("bad handler"); }, errors.Add);
            Assert.AreEqual(3, n);
            Assert.AreEqual(3, errors.Count);
        }

        [Test]
        public void StopDoesNotWaitForAHungConnect()
        {
            // A listener whose accept queue is full: on Linux further connects hang (no answer
            // to the SYN) until the connect timeout, like a back end host that is unreachable.
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start(0);
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            var filler = new TcpClient();
            filler.Connect(IPAddress.Loopback, port);
            try
            {
                var conn = new BridgeConnection("127.0.0.1", port, "test") { ConnectTimeoutMs = 5000 };
                conn.Start();
                Thread.Sleep(300);  // the connect is under way
                var watch = Stopwatch.StartNew();
                conn.Stop();
                Assert.Less(watch.Elapsed.TotalMilliseconds, 1000.0);  // it waited 2 s before
            }
            finally
            {
                filler.Close();
                listener.Stop();
            }
        }
    }
}
