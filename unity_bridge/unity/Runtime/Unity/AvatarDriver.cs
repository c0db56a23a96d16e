// Applies the bridge's commands to a VRM avatar: expressions with smooth transitions, auto
// blink, idle head movement, eyes that follow the camera, lip sync from the reply text
// (vowel visemes, or a single mouth value), and run-time model loading.
using System;
using System.Collections.Generic;
using AICompanion.Bridge.Protocol;
using UnityEngine;

namespace AICompanion.Bridge
{
    /// <summary>What moves the mouth while a reply streams.</summary>
    public enum LipSyncMode
    {
        /// <summary>Vowel shapes (aa, ih, ou, ee, oh) from the bridge's viseme stream.</summary>
        Visemes,
        /// <summary>One expression (mouthExpression) opened by the bridge's mouth value.</summary>
        MouthValue,
        Off,
    }

    [AddComponentMenu("AI Companion/Avatar Driver")]
    public class AvatarDriver : MonoBehaviour
    {
        public CompanionConnection connection;
        [Tooltip("The avatar already in the scene, if any; load_model replaces it")]
        public GameObject avatar;

        [Header("Expressions")]
        [Range(0.1f, 10f)] public float transitionSpeed = 1f;

        [Header("Lip sync")]
        public LipSyncMode lipSync = LipSyncMode.Visemes;
        [Tooltip("Seconds each vowel shape is held at the normal pace")]
        [Range(0.04f, 0.4f)] public float secondsPerViseme = 0.12f;
        [Tooltip("The expression the mouth value opens (LipSyncMode.MouthValue)")]
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

        [Header("Look at")]
        [Tooltip("The eyes follow lookAtTarget, or the main camera when it is empty (UniVRM's look-at)")]
        public bool lookAt = true;
        public Transform lookAtTarget;

        [Header("Events")]
        public StringEvent onModelLoaded = new StringEvent();

        public string ModelPath { get; private set; }
        /// <summary>The loaded model's expressions, by wire name.</summary>
        public IList<string> ExpressionNames { get { return _target != null ? _target.Names : new string[0]; } }

        private IExpressionTarget _target;
        private IEyes _eyes;
        private Transform _eyesTarget;
        private bool _eyesSet;
        private readonly Dictionary<string, float> _goal = new Dictionary<string, float>();
        private readonly Dictionary<string, float> _now = new Dictionary<string, float>();
        private readonly VisemePlayer _visemes = new VisemePlayer();
        private bool _visemesShown;
        private float _mouthGoal, _mouth, _mouthUpdatedAt;
        private float _nextBlink, _blinkStart = -1f;
        private Transform _head;
        private Quaternion _headRest, _headOffset = Quaternion.identity, _headGoal = Quaternion.identity;
        private bool _headAnimated;
        private float _nextHeadMove;
        private string _loadingPath;

        private void Awake()
        {
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
            transitionSpeed = (float)s.GetDouble("transition_speed", transitionSpeed);
            autoBlink = s.GetBool("auto_blink", autoBlink);
            var head = s.GetMap("auto_head_movement");
            if (head != null) ApplyHead(new Envelope("head", head));
            ApplyWelcomeExpressions(_goal, s.GetMap("expressions"));
            _visemes.Stop();
            string model = s.GetString("model");
            if (!string.IsNullOrEmpty(model) && model != ModelPath && model != _loadingPath)
                LoadModel(model, null);
        }

        /// <summary>The goals after a (re)connect: every expression set before goes to 0, then
        /// the welcome's values apply. Clearing instead would leave old weights on the face.
        /// Pure (no UnityEngine call), so the edit-mode tests run it anywhere.</summary>
        public static void ApplyWelcomeExpressions(Dictionary<string, float> goal, Dictionary<string, object> expressions)
        {
            foreach (var key in new List<string>(goal.Keys)) goal[key] = 0f;
            if (expressions == null) return;
            foreach (var pair in expressions)
                if (Envelope.IsNumber(pair.Value))
                    goal[ExpressionMap.Canonical(pair.Key)] = Math.Max(0f, Math.Min(1f, Convert.ToSingle(pair.Value)));
        }

        private void OnMessage(Envelope env)
        {
            switch (env.Type)
            {
                case MessageTypes.SetExpression:
                    _goal[ExpressionMap.Canonical(env.GetString("name", ""))] = Mathf.Clamp01((float)env.GetDouble("value"));
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
                case MessageTypes.Viseme:
                    if (lipSync == LipSyncMode.Visemes) _visemes.Enqueue(env.GetList("visemes"));
                    break;
                case MessageTypes.Speech:
                    if (env.GetBool("done")) _mouthUpdatedAt = -1f;
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

        // -- model ------------------------------------------------------------------------
        private async void LoadModel(string path, Envelope request)
        {
            _loadingPath = path;
            try
            {
                GameObject loaded = await ExpressionTargets.LoadModelAsync(path);
                if (this == null) { Destroy(loaded); return; }  // destroyed while loading
                if (avatar != null && avatar != loaded) Destroy(avatar);
                Attach(loaded);
                ModelPath = path;
                var names = new List<object>();
                foreach (string n in _target.Names) names.Add(n);  // the model's own, not a fixed list
                connection.Send(MessageTypes.ModelLoaded, new Dictionary<string, object>
                {
                    { "path", path }, { "expressions", names },
                });
                onModelLoaded.Invoke(path);
            }
            catch (Exception e)
            {
                Debug.LogException(e, this);
                if (connection == null) return;
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
            _eyes = AvatarRig.Eyes(model);
            _eyesSet = false;
            _now.Clear();
            _head = AvatarRig.Head(model);
            var animator = model.GetComponentInChildren<Animator>();
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
            UpdateEyes();
        }

        private void UpdateMouth(float dt)
        {
            if (lipSync == LipSyncMode.Visemes)
            {
                _visemes.SecondsPerShape = secondsPerViseme;
                _visemes.Tick(dt);
                if (!_visemes.Active && !_visemesShown) return;
                _visemesShown = _visemes.Active;
                foreach (string v in ExpressionMap.Visemes) _target.Set(v, Mathf.Max(_visemes.Weight(v), Goal(v)));
                return;
            }
            if (lipSync != LipSyncMode.MouthValue || string.IsNullOrEmpty(mouthExpression)) return;
            // No new text for a moment: close. While text streams, flutter around the value.
            float goal = _mouthUpdatedAt < 0f || Time.time - _mouthUpdatedAt > 0.3f ? 0f : _mouthGoal;
            float flutter = goal > 0f ? 0.6f + 0.4f * Mathf.Abs(Mathf.Sin(Time.time * 18f)) : 1f;
            _mouth = Mathf.Lerp(_mouth, goal * flutter, 1f - Mathf.Exp(-25f * dt));
            _target.Set(mouthExpression, Mathf.Max(_mouth, Goal(mouthExpression)));
        }

        private float Goal(string name)
        {
            float v;
            return _now.TryGetValue(name, out v) ? v : 0f;  // a vowel set by set_expression stays
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

        private void UpdateEyes()
        {
            if (_eyes == null) return;
            Transform target = null;
            if (lookAt) target = lookAtTarget != null ? lookAtTarget : (Camera.main != null ? Camera.main.transform : null);
            if (_eyesSet && target == _eyesTarget) return;
            _eyes.LookAt(target);
            _eyesTarget = target;
            _eyesSet = true;
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
            // On top of the animation when there is one, else on top of the rest pose. This runs
            // before Vrm10Instance (order 11000), which copies the control rig's head onward.
            _head.localRotation = (_headAnimated ? _head.localRotation : _headRest) * _headOffset;
        }
    }
}
