// UnityEvent types with arguments, [Serializable] so they show in the Inspector.
using System;
using UnityEngine.Events;

namespace AICompanion.Bridge
{
    /// <summary>A string: a disconnect reason, an avatar state, a model path.</summary>
    [Serializable] public class StringEvent : UnityEvent<string> { }

    /// <summary>The reply text so far, and whether it is the whole reply.</summary>
    [Serializable] public class SpeechEvent : UnityEvent<string, bool> { }
}
