// Plays the bridge's viseme stream as mouth weights: one shape after another at a speaking
// pace, blended so the mouth never snaps. Text streams faster than anyone speaks, so a player
// that falls behind speeds up (and drops what is far too old) instead of talking for minutes
// after the bubble is done. No UnityEngine: AvatarDriver calls Tick each frame, and the
// edit-mode tests (and the back end's CI, under Mono) drive it with fixed time steps.
using System;
using System.Collections.Generic;

namespace AICompanion.Bridge.Protocol
{
    public sealed class VisemePlayer
    {
        /// <summary>How long one shape is held at the normal pace (about 8 syllables a second).</summary>
        public double SecondsPerShape = 0.12;
        /// <summary>Past this many waiting shapes the pace goes up in proportion.</summary>
        public int CatchUpAt = 8;
        /// <summary>Shapes kept at most; older ones are dropped.</summary>
        public int MaxQueued = 256;
        /// <summary>How fast weights move toward their goal (1/s); 25 settles in about 0.1 s.</summary>
        public double Sharpness = 25;

        private readonly Queue<string> _queue = new Queue<string>();
        private readonly double[] _weights = new double[ExpressionMap.Visemes.Length];
        private string _current;
        private double _left;

        /// <summary>The shape being shown (aa, ih, ou, ee, oh, sil), or null when done.</summary>
        public string Current { get { return _current; } }
        public int Queued { get { return _queue.Count; } }

        /// <summary>True while a shape plays or the mouth is still closing.</summary>
        public bool Active
        {
            get
            {
                if (_current != null) return true;
                foreach (double w in _weights) if (w > 0.001) return true;
                return false;
            }
        }

        public void Enqueue(IEnumerable<object> shapes)
        {
            if (shapes == null) return;
            foreach (object shape in shapes)
            {
                var s = shape as string;
                if (s == null || (s != ExpressionMap.Silence && !ExpressionMap.IsViseme(s))) continue;
                _queue.Enqueue(s);
            }
            while (_queue.Count > MaxQueued) _queue.Dequeue();
        }

        /// <summary>Stop at once: the queue is emptied and the mouth closes (blended).</summary>
        public void Stop()
        {
            _queue.Clear();
            _current = null;
            _left = 0;
        }

        /// <summary>Advance by dt seconds.</summary>
        public void Tick(double dt)
        {
            if (dt < 0) dt = 0;
            double time = dt;
            while (time > 0 || (_current == null && _queue.Count > 0))
            {
                if (_current == null || _left <= 0)
                {
                    if (_queue.Count == 0) { _current = null; break; }
                    _current = _queue.Dequeue();
                    double pace = Math.Max(1.0, (double)_queue.Count / Math.Max(1, CatchUpAt));
                    _left = SecondsPerShape / pace;
                }
                double step = Math.Min(time, _left);
                _left -= step;
                time -= step;
                if (step <= 0) break;
            }
            double k = 1 - Math.Exp(-Sharpness * dt);
            for (int i = 0; i < _weights.Length; i++)
            {
                double goal = ExpressionMap.Visemes[i] == _current ? 1 : 0;
                _weights[i] += (goal - _weights[i]) * k;
                if (Math.Abs(_weights[i] - goal) < 0.001) _weights[i] = goal;
            }
        }

        /// <summary>The weight 0..1 of a viseme (aa, ih, ou, ee, oh) now.</summary>
        public float Weight(string viseme)
        {
            int i = Array.IndexOf(ExpressionMap.Visemes, viseme);
            return i >= 0 ? (float)_weights[i] : 0f;
        }
    }
}
