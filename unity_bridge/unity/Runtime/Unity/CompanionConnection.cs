// The scene's link to the companion back end: owns a BridgeConnection (threads, reconnect)
// and replays what it receives on Unity's main thread, in Update, as C# and Unity events.
// It connects while enabled: disabling it closes the connection (nothing piles up unread),
// enabling it connects again.
using System;
using System.Collections.Generic;
using AICompanion.Bridge.Protocol;
using UnityEngine;
using UnityEngine.Events;

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
        [Tooltip("Connect when enabled (and reconnect when enabled again)")]
        public bool connectOnStart = true;
        [Tooltip("Seconds before the first reconnect attempt; it doubles up to the maximum")]
        public float reconnectMinDelay = 0.5f;
        public float reconnectMaxDelay = 10f;
        [Tooltip("Messages handled per frame at most, so a burst never stalls a frame")]
        public int maxMessagesPerFrame = 256;

        [Header("Events")]
        [Tooltip("Handshake done (also after each reconnect)")]
        public UnityEvent onConnected = new UnityEvent();
        [Tooltip("The connection ended, with the reason; it reconnects unless the reason is fatal")]
        public StringEvent onDisconnected = new StringEvent();
        [Tooltip("idle, thinking, speaking or loading")]
        public StringEvent onStateChanged = new StringEvent();
        [Tooltip("The reply text so far, and true on the whole reply")]
        public SpeechEvent onSpeech = new SpeechEvent();

        /// <summary>Handshake done; the argument is welcome (its data.state is the avatar state).</summary>
        public event Action<Envelope> Connected;
        /// <summary>Any message of the bridge except ping/pong (answered for you).</summary>
        public event Action<Envelope> MessageReceived;
        /// <summary>The connection ended; it reconnects by itself unless the reason is fatal.</summary>
        public event Action<string> Disconnected;

        /// <summary>idle, thinking, speaking or loading.</summary>
        public string AvatarState { get; private set; }
        /// <summary>The reply text so far (speech bubble).</summary>
        public string SpeechText { get; private set; }
        /// <summary>Why the connection last ended ("" while never disconnected).</summary>
        public string LastDisconnectReason { get; private set; }

        private BridgeConnection _conn;
        private Action<BridgeEvent> _dispatch;

        public bool IsConnected { get { return _conn != null && _conn.IsConnected; } }

        private void Awake()
        {
            AvatarState = "idle";
            SpeechText = "";
            LastDisconnectReason = "";
            _dispatch = Dispatch;
        }

        private void OnEnable()
        {
            if (connectOnStart) Connect();
        }

        private void OnDisable() { Disconnect(); }

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

        /// <summary>Close the connection. Never blocks: a connect in progress is abandoned.</summary>
        public void Disconnect()
        {
            if (_conn == null) return;
            _conn.Stop();
            _conn = null;
        }

        private void Update()
        {
            // A handler may call Disconnect or Connect: Drain stops on a stopped connection, and
            // the local keeps this frame's one alive until then.
            BridgeConnection conn = _conn;
            if (conn != null) conn.Drain(maxMessagesPerFrame, _dispatch, LogHandlerError);
        }

        private void LogHandlerError(Exception e) { Debug.LogException(e, this); }  // one bad handler never stops the others

        private void Dispatch(BridgeEvent ev)
        {
            switch (ev.Kind)
            {
                case BridgeEventKind.Connected:
                    Debug.Log("[companion] connected to " + host + ":" + port, this);
                    var state = ev.Envelope.GetMap("state");
                    if (state != null) SetState(new Envelope("state", state).GetString("avatar_state", "idle"));
                    if (Connected != null) Connected(ev.Envelope);
                    onConnected.Invoke();
                    break;
                case BridgeEventKind.Disconnected:
                    if (ev.Fatal) Debug.LogError("[companion] " + ev.Reason + " (not retrying)", this);
                    else Debug.LogWarning("[companion] disconnected: " + ev.Reason + "; reconnecting", this);
                    LastDisconnectReason = ev.Reason;
                    if (Disconnected != null) Disconnected(ev.Reason);
                    onDisconnected.Invoke(ev.Reason);
                    break;
                default:
                    var env = ev.Envelope;
                    if (env.Type == MessageTypes.AvatarState) SetState(env.GetString("state", "idle"));
                    else if (env.Type == MessageTypes.Speech)
                    {
                        SpeechText = env.GetString("text", "");
                        onSpeech.Invoke(SpeechText, env.GetBool("done"));
                    }
                    if (MessageReceived != null) MessageReceived(env);
                    break;
            }
        }

        private void SetState(string state)
        {
            if (state == AvatarState) return;
            AvatarState = state;
            onStateChanged.Invoke(state);
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

        private void OnApplicationQuit() { Disconnect(); }
    }
}
