// Applies the bridge's commands to a VRM avatar: expressions with smooth transitions, auto
// blink, idle head movement, a mouth that follows the reply text, and run-time model loading.
// It also keeps what the avatar should look like it is doing (idle, thinking, speaking,
// loading) and the reply text, for the scene to show (see the sample's speech bubble).
using System;
using System.Collections.Generic;
using AICompanion.Bridge.Protocol;
using UnityEngine;
using UnityEngine.Events;

namespace AICompanion.Bridge
{
    [Serializable] public class StringEvent : UnityEvent<string> { }
    [Serializable] public class SpeechEvent : UnityEvent<string, bool> { }

    [AddComponentMenu("AI Companion/Avatar Driver")]
    public class AvatarDriver : MonoBehaviour
    {
        public CompanionConnection connection;
        [Tooltip("The avatar already in the scene, if any; load_model replaces it")]
        public GameObject avatar;

        [Header("Expressions")]
        [Range(0.1f, 10f)] public float transitionSpeed = 1f;
        public string mouthExpression = "aa";

        [Header("Auto blink")]
        public bool autoBlink = true;
        public Vector2 blinkInterval = new Vector2(2f, 6f);
        public float blinkDuration = 0.15f;

        [Header("Head movement")]
        public bool autoHeadMovement = true;
        public float headMinInterval = 2f;
        public float headMaxInterval = 6f;
        public float headMaxAngle = 10f;

        [Header("Events")]
        public StringEvent onAvatarState = new StringEvent();
        public SpeechEvent onSpeech = new SpeechEvent();
        public StringEvent onModelLoaded = new StringEvent();

        /// <summary>idle, thinking, speaking or loading.</summary>
        public string AvatarState { get; private set; }
        /// <summary>The reply text so far (speech bubble).</summary>
        public string SpeechText { get; private set; }
        public string ModelPath { get; private set; }

        private IExpressionTarget _target;
        private readonly Dictionary<string, float> _goal = new Dictionary<string, float>();
        private readonly Dictionary<string, float> _now = new Dictionary<string, float>();
        private float _mouthGoal, _mouth, _mouthUpdatedAt;
        private float _nextBlink, _blinkStart = -1f;
        private Transform _head;
        private Quaternion _headRest, _headOffset = Quaternion.identity, _headGoal = Quaternion.identity;
        private bool _headAnimated;
        private float _nextHeadMove;
        private string _loadingPath;

        private void Awake()
        {
            AvatarState = "idle";
            SpeechText = "";
            if (connection == null) connection = GetComponent<CompanionConnection>();
        }

        private void OnEnable()
        {
            if (connection == null) return;
            connection.Connected += OnWelcome;
            connection.MessageReceived += OnMessage;
        }

        private void OnDisable()
        {
            if (connection == null) return;
            connection.Connected -= OnWelcome;
            connection.MessageReceived -= OnMessage;
        }

        private void Start()
        {
            if (avatar != null) Attach(avatar);
        }

        // -- from the bridge ------------------------------------------------------------
        private void OnWelcome(Envelope welcome)
        {
            var state = welcome.GetMap("state");
            if (state == null) return;
            var s = new Envelope("state", state);
            SetState(s.GetString("avatar_state", "idle"));
            transitionSpeed = (float)s.GetDouble("transition_speed", transitionSpeed);
            autoBlink = s.GetBool("auto_blink", autoBlink);
            var head = s.GetMap("auto_head_movement");
            if (head != null) ApplyHead(new Envelope("head", head));
            _goal.Clear();
            var expressions = s.GetMap("expressions");
            if (expressions != null)
                foreach (var pair in expressions)
                    if (Envelope.IsNumber(pair.Value)) _goal[pair.Key] = Convert.ToSingle(pair.Value);
            string model = s.GetString("model");
            if (!string.IsNullOrEmpty(model) && model != ModelPath && model != _loadingPath)
                LoadModel(model, null);
        }

        private void OnMessage(Envelope env)
        {
            switch (env.Type)
            {
                case MessageTypes.SetExpression:
                    _goal[env.GetString("name", "")] = Mathf.Clamp01((float)env.GetDouble("value"));
                    break;
                case MessageTypes.ResetExpressions:
                    foreach (var key in new List<string>(_goal.Keys)) _goal[key] = 0f;
                    break;
                case MessageTypes.SetTransitionSpeed:
                    transitionSpeed = Mathf.Clamp((float)env.GetDouble("speed", 1), 0.1f, 10f);
                    break;
                case MessageTypes.SetAutoBlink:
                    autoBlink = env.GetBool("enabled", true);
                    break;
                case MessageTypes.SetAutoHeadMovement:
                    ApplyHead(env);
                    break;
                case MessageTypes.LoadModel:
                    LoadModel(env.GetString("path", ""), env);
                    break;
                case MessageTypes.AvatarState:
                    SetState(env.GetString("state", "idle"));
                    break;
                case MessageTypes.Speech:
                    SpeechText = env.GetString("text", "");
                    onSpeech.Invoke(SpeechText, env.GetBool("done"));
                    break;
                case MessageTypes.Mouth:
                    _mouthGoal = Mathf.Clamp01((float)env.GetDouble("value"));
                    _mouthUpdatedAt = Time.time;
                    break;
            }
        }

        private void ApplyHead(Envelope env)
        {
            autoHeadMovement = env.GetBool("enabled", autoHeadMovement);
            headMinInterval = (float)env.GetDouble("min_interval", headMinInterval);
            headMaxInterval = (float)env.GetDouble("max_interval", headMaxInterval);
            headMaxAngle = (float)env.GetDouble("max_angle", headMaxAngle);
        }

        private void SetState(string state)
        {
            if (state == AvatarState) return;
            AvatarState = state;
            onAvatarState.Invoke(state);
        }

        // -- model ------------------------------------------------------------------------
        private async void LoadModel(string path, Envelope request)
        {
            _loadingPath = path;
            try
            {
                GameObject loaded = await ExpressionTargets.LoadModelAsync(path);
                if (avatar != null && avatar != loaded) Destroy(avatar);
                Attach(loaded);
                ModelPath = path;
                var names = new List<object>();
                foreach (string n in _target.Names) names.Add(n);
                connection.Send(MessageTypes.ModelLoaded, new Dictionary<string, object>
                {
                    { "path", path }, { "expressions", names },
                });
                onModelLoaded.Invoke(path);
            }
            catch (Exception e)
            {
                Debug.LogException(e, this);
                if (request != null) connection.ReplyError(request, e.Message);  // -> avatar_error
                else connection.Send(MessageTypes.AvatarError, new Dictionary<string, object>
                {
                    { "message", e.Message }, { "command", MessageTypes.LoadModel },
                });
            }
            finally
            {
                _loadingPath = null;
            }
        }

        private void Attach(GameObject model)
        {
            avatar = model;
            _target = ExpressionTargets.For(model);
            _now.Clear();
            var animator = model.GetComponentInChildren<Animator>();
            _head = animator != null && animator.isHuman ? animator.GetBoneTransform(HumanBodyBones.Head) : null;
            _headAnimated = animator != null && animator.runtimeAnimatorController != null;
            if (_head != null) _headRest = _head.localRotation;
            _headOffset = _headGoal = Quaternion.identity;
        }

        // -- every frame ----------------------------------------------------------------
        private void Update()
        {
            if (_target == null) return;
            float dt = Time.deltaTime;
            float k = 1f - Mathf.Exp(-10f * transitionSpeed * dt);
            foreach (var pair in _goal)
            {
                float current;
                _now.TryGetValue(pair.Key, out current);
                float next = Mathf.Lerp(current, pair.Value, k);
                if (Mathf.Abs(next - pair.Value) < 0.001f) next = pair.Value;
                if (next != current || !_now.ContainsKey(pair.Key)) _target.Set(pair.Key, next);
                _now[pair.Key] = next;
            }
            UpdateMouth(dt);
            UpdateBlink();
        }

        private void UpdateMouth(float dt)
        {
            // No new text for a moment: close. While text streams, flutter around the value.
            float goal = Time.time - _mouthUpdatedAt > 0.3f ? 0f : _mouthGoal;
            float flutter = goal > 0f ? 0.6f + 0.4f * Mathf.Abs(Mathf.Sin(Time.time * 18f)) : 1f;
            _mouth = Mathf.Lerp(_mouth, goal * flutter, 1f - Mathf.Exp(-25f * dt));
            if (!string.IsNullOrEmpty(mouthExpression)) _target.Set(mouthExpression, _mouth);
        }

        private void UpdateBlink()
        {
            if (!autoBlink)
            {
                if (_blinkStart >= 0f) { _target.Set("blink", 0f); _blinkStart = -1f; }
                return;
            }
            float t = Time.time;
            if (_blinkStart < 0f && t >= _nextBlink)
            {
                _blinkStart = t;
                _nextBlink = t + UnityEngine.Random.Range(blinkInterval.x, blinkInterval.y);
            }
            if (_blinkStart < 0f) return;
            float phase = (t - _blinkStart) / Mathf.Max(0.01f, blinkDuration);
            if (phase >= 1f) { _target.Set("blink", 0f); _blinkStart = -1f; return; }
            _target.Set("blink", 1f - Mathf.Abs(2f * phase - 1f));  // close, then open
        }

        private void LateUpdate()
        {
            if (_head == null) return;
            if (autoHeadMovement && Time.time >= _nextHeadMove)
            {
                _nextHeadMove = Time.time + UnityEngine.Random.Range(headMinInterval, Mathf.Max(headMinInterval, headMaxInterval));
                _headGoal = Quaternion.Euler(UnityEngine.Random.Range(-headMaxAngle, headMaxAngle) * 0.5f,
                                             UnityEngine.Random.Range(-headMaxAngle, headMaxAngle), 0f);
            }
            if (!autoHeadMovement) _headGoal = Quaternion.identity;
            _headOffset = Quaternion.Slerp(_headOffset, _headGoal, 1f - Mathf.Exp(-2f * Time.deltaTime));
            // On top of the animation when there is one, else on top of the rest pose.
            _head.localRotation = (_headAnimated ? _head.localRotation : _headRest) * _headOffset;
        }
    }
}
