// A small avatar stand-in for tests/test_csharp_client.py: the Unity package's UnityEngine-free
// code (msgpack, framing, BridgeConnection) against a live bridge, compiled with mcs, run with
// mono. It prints one line per step; the Python test drives the other side and checks them.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using AICompanion.Bridge.Protocol;

public static class BridgeProbe
{
    static void Say(string line)
    {
        Console.WriteLine(line);
        Console.Out.Flush();
    }

    static string Num(double v) { return v.ToString("R", CultureInfo.InvariantCulture); }

    static void SelfTest()
    {
        var value = new Dictionary<string, object>
        {
            { "neg", -40000L }, { "small", -5L }, { "big", ulong.MaxValue }, { "pi", 3.25 },
            { "text", "héllo ✓" }, { "bin", new byte[] { 1, 2, 3 } }, { "none", null },
            { "list", new List<object> { true, false, 300L, new string('x', 300) } },
        };
        var back = (Dictionary<string, object>)MsgPack.Unpack(MsgPack.Pack(value));
        bool ok = (long)back["neg"] == -40000 && (long)back["small"] == -5
            && (ulong)back["big"] == ulong.MaxValue && (double)back["pi"] == 3.25
            && (string)back["text"] == "héllo ✓" && ((byte[])back["bin"]).SequenceEqual(new byte[] { 1, 2, 3 })
            && back["none"] == null && ((List<object>)back["list"]).Count == 4
            && ((string)((List<object>)back["list"])[3]).Length == 300;
        bool rejected = false;
        try { MsgPack.Unpack(new byte[] { 0xdd, 0x7f, 0xff, 0xff, 0xff }); }  // array of 2^31-1, no bytes
        catch (MsgPackException) { rejected = true; }
        Say(ok && rejected ? "SELFTEST ok" : "SELFTEST failed");
    }

    public static int Main(string[] args)
    {
        SelfTest();
        var conn = new BridgeConnection(args[0], int.Parse(args[1]), "mono-probe")
        {
            ReconnectMinDelay = 0.05, ReconnectMaxDelay = 0.5,
        };
        conn.Start();
        int welcomes = 0;
        DateTime deadline = DateTime.UtcNow.AddSeconds(90);
        while (DateTime.UtcNow < deadline)
        {
            BridgeEvent ev;
            if (!conn.TryDequeue(out ev)) { System.Threading.Thread.Sleep(5); continue; }
            if (ev.Kind == BridgeEventKind.Connected)
            {
                welcomes++;
                var state = ev.Envelope.GetMap("state");
                var expressions = (Dictionary<string, object>)state["expressions"];
                Say("WELCOME " + welcomes + " " + string.Join(",", expressions.OrderBy(p => p.Key)
                    .Select(p => p.Key + "=" + Num(Convert.ToDouble(p.Value, CultureInfo.InvariantCulture)))));
                if (welcomes == 2) { conn.Stop(); Say("DONE"); return 0; }
            }
            else if (ev.Kind == BridgeEventKind.Disconnected)
            {
                Say("DISCONNECTED " + ev.Reason);
            }
            else if (ev.Envelope.Type == MessageTypes.SetExpression)
            {
                var env = ev.Envelope;
                Say("SET_EXPRESSION " + env.GetString("name") + " " + Num(env.GetDouble("value")));
                conn.Reply(env.Id.Value, MessageTypes.Ok);
                conn.Send(MessageTypes.Clicked, new Dictionary<string, object>
                {
                    { "target", "head" }, { "x", 0.25 }, { "y", 0.75 },
                });
                Say("SENT clicked");
            }
            else if (ev.Envelope.Type == MessageTypes.Viseme)
            {
                // The lip-sync stream: print it, then play it as AvatarDriver would each frame.
                var shapes = ev.Envelope.GetList("visemes");
                Say("VISEME " + string.Join(",", shapes.Select(x => (string)x)));
                var player = new VisemePlayer { SecondsPerShape = 0.05 };
                player.Enqueue(shapes);
                var played = new List<string>();
                int queued = player.Queued;
                for (int i = 0; i < 500 && (player.Current != null || player.Queued > 0); i++)
                {
                    player.Tick(0.01);  // 10 ms frames: one shape starts at most per frame
                    if (player.Queued < queued && player.Current != null) played.Add(player.Current);
                    queued = player.Queued;
                }
                Say("PLAYED " + string.Join(",", played));
            }
            else
            {
                Say("MESSAGE " + ev.Envelope.Type);
            }
        }
        Say("TIMEOUT");
        conn.Stop();
        return 2;
    }
}
