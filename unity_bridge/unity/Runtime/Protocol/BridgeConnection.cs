// The client side of the Unity wire, without UnityEngine: TCP, framing, handshake, ping/pong,
// and reconnection with exponential backoff and jitter. It runs on threads of its own and
// hands everything to the owner through a queue, which a Unity component drains on the main
// thread (Unity objects may only be touched there). Pings are answered on the reader thread,
// so a main thread busy loading a model does not get the connection dropped.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Net.Sockets;
using System.Threading;

[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("AICompanion.Bridge.Tests.Editor")]

namespace AICompanion.Bridge.Protocol
{
    public enum BridgeEventKind { Connected, Message, Disconnected }

    /// <summary>What the connection reports to its owner, in order.</summary>
    public sealed class BridgeEvent
    {
        public BridgeEventKind Kind;
        /// <summary>welcome (Connected) or the message (Message); null for Disconnected.</summary>
        public Envelope Envelope;
        /// <summary>Why the connection ended (Disconnected).</summary>
        public string Reason;
        /// <summary>True when reconnecting cannot help (wrong protocol version or token).</summary>
        public bool Fatal;
    }

    /// <summary>The bridge refused the handshake.</summary>
    public class BridgeRefusedException : Exception
    {
        public readonly long Code;
        public BridgeRefusedException(long code, string message) : base(message) { Code = code; }
    }

    public sealed class BridgeConnection : IDisposable
    {
        public readonly string Host;
        public readonly int Port;
        public readonly string ClientName;
        public readonly string Token;
        public int MaxFrame = ProtocolInfo.DefaultMaxFrame;
        public bool AutoReconnect = true;
        public double ReconnectMinDelay = 0.5;
        public double ReconnectMaxDelay = 10.0;
        public double ReconnectJitter = 0.2;
        public int ConnectTimeoutMs = 5000;

        private readonly ConcurrentQueue<BridgeEvent> _events = new ConcurrentQueue<BridgeEvent>();
        private readonly HashSet<string> _requests = new HashSet<string>(MessageTypes.Requests);
        private readonly object _writeLock = new object();
        private readonly ManualResetEvent _stop = new ManualResetEvent(false);
        private readonly System.Random _random = new System.Random();
        private Thread _thread;
        private TcpClient _tcp;
        private Stream _stream;
        private long _nextId;
        private long _lastRxTicks;
        private volatile bool _connected;
        private volatile bool _stopped;
        private TcpClient _connecting;

        public BridgeConnection(string host, int port, string clientName, string token = null)
        {
            Host = host;
            Port = port;
            ClientName = clientName;
            Token = string.IsNullOrEmpty(token) ? null : token;
        }

        public bool IsConnected { get { return _connected; } }

        /// <summary>The welcome of the current (or last) connection.</summary>
        public Envelope Welcome { get; private set; }

        public void Start()
        {
            if (_stopped) throw new InvalidOperationException("a stopped BridgeConnection does not start again: make a new one");
            if (_thread != null) return;
            _thread = new Thread(Run) { IsBackground = true, Name = "companion-bridge" };
            _thread.Start();
        }

        /// <summary>Stop for good, without waiting: the socket (connected or still connecting)
        /// is closed, so the thread ends at once, on its own. Safe to call from anywhere,
        /// Unity's main thread included (leaving Play mode never waits on a hung connect).</summary>
        public void Stop()
        {
            _stopped = true;
            _stop.Set();
            CloseSocket();
            _thread = null;
        }

        /// <summary>True once Stop was called.</summary>
        public bool IsStopped { get { return _stopped; } }

        public void Dispose() { Stop(); }

        public bool TryDequeue(out BridgeEvent ev) { return _events.TryDequeue(out ev); }

        /// <summary>Queue an event as if the connection thread had (edit-mode tests).</summary>
        internal void Post(BridgeEvent ev) { _events.Enqueue(ev); }

        /// <summary>Hand at most max queued events to handle, in order; stops early when the
        /// connection is stopped (a handler may Stop it). A handler that throws is reported
        /// to onError and the next event goes on. Returns how many were handled.</summary>
        public int Drain(int max, Action<BridgeEvent> handle, Action<Exception> onError = null)
        {
            int n = 0;
            BridgeEvent ev;
            while (n < max && !_stopped && _events.TryDequeue(out ev))
            {
                n++;
                try
                {
                    handle(ev);
                }
                catch (Exception e)
                {
                    if (onError == null) throw;
                    onError(e);
                }
            }
            return n;
        }

        /// <summary>Send a message; requests get a fresh id, which is returned (else 0).
        /// Returns -1 when not connected: the message is dropped, the bridge's state replay
        /// on the next welcome is what a client relies on.</summary>
        public long Send(string type, Dictionary<string, object> data = null)
        {
            return _connected ? SendNow(type, data) : -1;
        }

        private long SendNow(string type, Dictionary<string, object> data)
        {
            long id = _requests.Contains(type) ? Interlocked.Increment(ref _nextId) : 0;
            var env = new Envelope(type, data, id > 0 ? (long?)id : null);
            return Write(env) ? id : -1;
        }

        /// <summary>Answer a request of the bridge (ok, or error with a code from ErrorCodes).</summary>
        public bool Reply(long replyTo, string type, Dictionary<string, object> data = null)
        {
            return Write(new Envelope(type, data, null, replyTo));
        }

        // -- the connection thread ------------------------------------------------------
        private void Run()
        {
            int attempt = 0;
            while (!_stop.WaitOne(0))
            {
                string reason;
                bool fatal = false;
                bool wasConnected = false;
                try
                {
                    Open();
                    Handshake();
                    wasConnected = true;
                    attempt = 0;
                    reason = ReadLoop();
                }
                catch (BridgeRefusedException e)
                {
                    reason = "refused (" + e.Code + "): " + e.Message;
                    fatal = e.Code == ErrorCodes.ProtocolVersion || e.Code == ErrorCodes.Unauthorized;
                }
                catch (Exception e)
                {
                    reason = e.GetType().Name + ": " + e.Message;
                }
                _connected = false;
                CloseSocket();
                if (_stopped) break;  // the owner is gone: nothing more to report
                if (wasConnected || fatal || attempt == 0)
                    _events.Enqueue(new BridgeEvent { Kind = BridgeEventKind.Disconnected, Reason = reason, Fatal = fatal });
                if (fatal || !AutoReconnect) break;
                double delay = Math.Min(ReconnectMaxDelay, ReconnectMinDelay * Math.Pow(2, Math.Min(attempt, 16)));
                delay *= 1 + ReconnectJitter * (2 * _random.NextDouble() - 1);
                attempt++;
                if (_stop.WaitOne(TimeSpan.FromSeconds(delay))) break;
            }
        }

        private void Open()
        {
            var tcp = new TcpClient { NoDelay = true };
            lock (_writeLock) _connecting = tcp;  // Stop closes it, ending a hung connect
            try
            {
                if (_stopped) throw new IOException("stopped");
                var pending = tcp.BeginConnect(Host, Port, null, null);
                int woke = WaitHandle.WaitAny(new[] { pending.AsyncWaitHandle, _stop }, ConnectTimeoutMs);
                if (woke != 0)
                {
                    tcp.Close();
                    throw new IOException(woke == 1 ? "stopped" : "connect to " + Host + ":" + Port + " timed out");
                }
                tcp.EndConnect(pending);
            }
            finally
            {
                lock (_writeLock) _connecting = null;
            }
            lock (_writeLock)
            {
                if (_stopped) { tcp.Close(); throw new IOException("stopped"); }
                _tcp = tcp;
                _stream = tcp.GetStream();
            }
            Touch();
        }

        private void Handshake()
        {
            var data = new Dictionary<string, object>
            {
                { "protocol", ProtocolInfo.Version },
                { "client", ClientName },
            };
            if (Token != null) data["token"] = Token;
            long id = SendNow(MessageTypes.Hello, data);  // the only message before welcome
            if (id < 0) throw new IOException("connection lost before hello");
            _tcp.ReceiveTimeout = ConnectTimeoutMs;  // the bridge answers hello at once
            while (true)
            {
                Envelope env = Next();
                if (env == null) throw new IOException("the bridge closed the connection during the handshake");
                if (env.ReplyTo != id) continue;
                if (env.Type == MessageTypes.Error)
                    throw new BridgeRefusedException(env.GetLong("code"), env.GetString("message", "refused"));
                if (env.Type != MessageTypes.Welcome)
                    throw new ProtocolException("expected welcome, got " + env.Type);
                _tcp.ReceiveTimeout = 0;
                Welcome = env;
                _connected = true;
                StartHeartbeat(env.GetDouble("ping_interval_s", 5), env.GetDouble("timeout_s", 15));
                _events.Enqueue(new BridgeEvent { Kind = BridgeEventKind.Connected, Envelope = env });
                return;
            }
        }

        private string ReadLoop()
        {
            while (true)
            {
                Envelope env = Next();
                if (env == null) return "closed by the bridge";
                if (env.Type == MessageTypes.Ping && env.Id.HasValue)
                {
                    Reply(env.Id.Value, MessageTypes.Pong, new Dictionary<string, object> { { "from", ClientName } });
                    continue;
                }
                if (env.Type == MessageTypes.Pong) continue;
                _events.Enqueue(new BridgeEvent { Kind = BridgeEventKind.Message, Envelope = env });
            }
        }

        private Envelope Next()
        {
            byte[] payload = Framing.ReadFrame(_stream, MaxFrame);
            if (payload == null) return null;
            Touch();
            return Envelope.Decode(payload);
        }

        // -- heartbeat: ping the bridge, and give up on a silent one ------------------------
        private Timer _heartbeat;

        private void StartHeartbeat(double intervalS, double timeoutS)
        {
            if (_heartbeat != null) _heartbeat.Dispose();
            int period = (int)Math.Max(50, intervalS * 1000);
            _heartbeat = new Timer(_ =>
            {
                if (!_connected) return;
                double silent = TimeSpan.FromTicks(DateTime.UtcNow.Ticks - Interlocked.Read(ref _lastRxTicks)).TotalSeconds;
                if (silent > timeoutS) CloseSocket();  // unblocks the reader, which reconnects
                else Send(MessageTypes.Ping);
            }, null, period, period);
        }

        private void Touch() { Interlocked.Exchange(ref _lastRxTicks, DateTime.UtcNow.Ticks); }

        private bool Write(Envelope env)
        {
            byte[] frame = Framing.Frame(env.Encode());
            lock (_writeLock)
            {
                if (_stream == null) return false;
                try
                {
                    _stream.Write(frame, 0, frame.Length);
                    return true;
                }
                catch (Exception)
                {
                    return false;  // the reader thread notices the broken socket and reconnects
                }
            }
        }

        private void CloseSocket()
        {
            lock (_writeLock)
            {
                if (_heartbeat != null) { _heartbeat.Dispose(); _heartbeat = null; }
                if (_tcp != null) { _tcp.Close(); _tcp = null; }
                if (_connecting != null && _stopped) _connecting.Close();
                _stream = null;
            }
        }
    }
}
