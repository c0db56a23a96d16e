// The scene's link to the companion back end: owns a BridgeConnection (threads, reconnect)
// and replays what it receives on Unity's main thread, in Update, as C# events.
using System;
using System.Collections.Generic;
using AICompanion.Bridge.Protocol;
using UnityEngine;

namespace AICompanion.Bridge
{
    [DisallowMultipleComponent]
    [AddComponentMenu("AI Companion/Companion Connection")]
    public class CompanionConnection : MonoBehaviour
    {
        [Tooltip("unity_bridge.host of the back end (127.0.0.1 unless it binds another address)")]
        public string host = "127.0.0.1";
        [Tooltip("unity_bridge.port of the back end")]
        public int port = 5555;
        [Tooltip("unity_bridge.token, when the back end has one")]
        public string token = "";
        public string clientName = "unity-avatar";
        public bool connectOnStart = true;
        [Tooltip("Seconds before the first reconnect attempt; it doubles up to the maximum")]
        public float reconnectMinDelay = 0.5f;
        public float reconnectMaxDelay = 10f;
        [Tooltip("Messages handled per frame at most, so a burst never stalls a frame")]
        public int maxMessagesPerFrame = 256;

        /// <summary>Handshake done; the argument is welcome (its data.state is the avatar state).</summary>
        public event Action<Envelope> Connected;
        /// <summary>Any message of the bridge except ping/pong (answered for you).</summary>
        public event Action<Envelope> MessageReceived;
        /// <summary>The connection ended; it reconnects by itself unless the reason is fatal.</summary>
        public event Action<string> Disconnected;

        private BridgeConnection _conn;

        public bool IsConnected { get { return _conn != null && _conn.IsConnected; } }

        private void Start()
        {
            if (connectOnStart) Connect();
        }

        public void Connect()
        {
            Disconnect();
            _conn = new BridgeConnection(host, port, clientName, token)
            {
                ReconnectMinDelay = reconnectMinDelay,
                ReconnectMaxDelay = reconnectMaxDelay,
            };
            _conn.Start();
        }

        public void Disconnect()
        {
            if (_conn == null) return;
            _conn.Stop();
            _conn = null;
        }

        private void Update()
        {
            if (_conn == null) return;
            BridgeEvent ev;
            for (int i = 0; i < maxMessagesPerFrame && _conn.TryDequeue(out ev); i++)
            {
                try
                {
                    Dispatch(ev);
                }
                catch (Exception e)
                {
                    Debug.LogException(e, this);  // one bad handler never stops the others
                }
            }
        }

        private void Dispatch(BridgeEvent ev)
        {
            switch (ev.Kind)
            {
                case BridgeEventKind.Connected:
                    Debug.Log("[companion] connected to " + host + ":" + port, this);
                    if (Connected != null) Connected(ev.Envelope);
                    break;
                case BridgeEventKind.Disconnected:
                    if (ev.Fatal) Debug.LogError("[companion] " + ev.Reason + " (not retrying)", this);
                    else Debug.LogWarning("[companion] disconnected: " + ev.Reason + "; reconnecting", this);
                    if (Disconnected != null) Disconnected(ev.Reason);
                    break;
                default:
                    if (MessageReceived != null) MessageReceived(ev.Envelope);
                    break;
            }
        }

        /// <summary>Send a command or an event; returns the request id, 0 for an event, -1 if
        /// not connected (dropped: the back end replays its state on reconnect).</summary>
        public long Send(string type, Dictionary<string, object> data = null)
        {
            return _conn != null ? _conn.Send(type, data) : -1;
        }

        /// <summary>Tell the bridge a command of its could not be applied; it goes onto the bus
        /// as avatar_error.</summary>
        public void ReplyError(Envelope request, string message, long code = ErrorCodes.InvalidRequest)
        {
            if (_conn == null || !request.Id.HasValue) return;
            _conn.Reply(request.Id.Value, MessageTypes.Error, new Dictionary<string, object>
            {
                { "code", code }, { "message", message },
            });
        }

        private void OnDestroy() { Disconnect(); }

        private void OnApplicationQuit() { Disconnect(); }
    }
}
