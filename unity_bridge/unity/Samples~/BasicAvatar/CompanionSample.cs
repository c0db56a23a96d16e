// A minimal scene script: a status overlay (connection, avatar state, last disconnect reason,
// model), a speech bubble over the avatar, and a click on the avatar reported to the back end.
// Put it on the GameObject that has CompanionConnection and AvatarDriver (see the package
// README, "Sample scene"). Clicks read the Input System package when the project uses it
// (the Unity 6 default), else the legacy Input Manager; the legacy Input class throws in a
// project set to the Input System only.
using System.Collections.Generic;
using AICompanion.Bridge;
using AICompanion.Bridge.Protocol;
using UnityEngine;
#if AIC_INPUT_SYSTEM && ENABLE_INPUT_SYSTEM
using UnityEngine.InputSystem;
#endif

public class CompanionSample : MonoBehaviour
{
    public CompanionConnection connection;
    public AvatarDriver driver;
    [Tooltip("Seconds a finished reply stays on screen")]
    public float bubbleSeconds = 6f;
    [Tooltip("Show the status overlay (top left)")]
    public bool showStatus = true;

    private string _bubble = "";
    private float _hideAt;

    private void Awake()
    {
        if (connection == null) connection = GetComponent<CompanionConnection>();
        if (driver == null) driver = GetComponent<AvatarDriver>();
    }

    private void OnEnable() { connection.onSpeech.AddListener(OnSpeech); }

    private void OnDisable() { connection.onSpeech.RemoveListener(OnSpeech); }

    private void OnSpeech(string text, bool done)
    {
        _bubble = text;
        _hideAt = done ? Time.time + bubbleSeconds : float.MaxValue;
    }

    /// <summary>Where the pointer was pressed this frame, if it was.</summary>
    private static bool Pressed(out Vector2 position)
    {
#if AIC_INPUT_SYSTEM && ENABLE_INPUT_SYSTEM
        var mouse = Mouse.current;
        position = mouse != null ? mouse.position.ReadValue() : default(Vector2);
        return mouse != null && mouse.leftButton.wasPressedThisFrame;
#elif ENABLE_LEGACY_INPUT_MANAGER
        position = Input.mousePosition;
        return Input.GetMouseButtonDown(0);
#else
        position = default(Vector2);
        return false;
#endif
    }

    private void Update()
    {
        Vector2 pointer;
        if (!Pressed(out pointer) || Camera.main == null) return;
        RaycastHit hit;
        if (!Physics.Raycast(Camera.main.ScreenPointToRay(pointer), out hit)) return;
        if (driver.avatar == null || !hit.transform.IsChildOf(driver.avatar.transform)) return;
        connection.Send(MessageTypes.Clicked, new Dictionary<string, object>
        {
            { "target", hit.transform.name },
            { "x", pointer.x / Screen.width },
            { "y", pointer.y / Screen.height },
        });
    }

    private void OnGUI()
    {
        if (showStatus)
        {
            string link = connection.IsConnected ? "connected" : "connecting...";
            GUI.Label(new Rect(10, 10, 500, 22), "companion: " + link + ", " + connection.AvatarState);
            if (!connection.IsConnected && connection.LastDisconnectReason.Length > 0)
                GUI.Label(new Rect(10, 30, 500, 22), "last disconnect: " + connection.LastDisconnectReason);
            GUI.Label(new Rect(10, 50, 500, 22), "model: " + (driver.ModelPath ?? "(the one in the scene)"));
        }
        if (!string.IsNullOrEmpty(_bubble) && Time.time < _hideAt)
            GUI.Box(new Rect(Screen.width / 2 - 200, 40, 400, 80), _bubble);
    }
}
