// A minimal scene script: a speech bubble and a state label over the avatar, and a click on
// the avatar reported to the back end. Put it on the GameObject that has CompanionConnection
// and AvatarDriver (see the package README, "Sample scene").
using System.Collections.Generic;
using AICompanion.Bridge;
using AICompanion.Bridge.Protocol;
using UnityEngine;

public class CompanionSample : MonoBehaviour
{
    public CompanionConnection connection;
    public AvatarDriver driver;
    [Tooltip("Seconds a finished reply stays on screen")]
    public float bubbleSeconds = 6f;

    private string _bubble = "";
    private float _hideAt;

    private void Awake()
    {
        if (connection == null) connection = GetComponent<CompanionConnection>();
        if (driver == null) driver = GetComponent<AvatarDriver>();
        driver.onSpeech.AddListener(OnSpeech);
    }

    private void OnSpeech(string text, bool done)
    {
        _bubble = text;
        _hideAt = done ? Time.time + bubbleSeconds : float.MaxValue;
    }

    private void Update()
    {
        if (!Input.GetMouseButtonDown(0) || Camera.main == null) return;
        RaycastHit hit;
        if (!Physics.Raycast(Camera.main.ScreenPointToRay(Input.mousePosition), out hit)) return;
        if (driver.avatar == null || !hit.transform.IsChildOf(driver.avatar.transform)) return;
        connection.Send(MessageTypes.Clicked, new Dictionary<string, object>
        {
            { "target", hit.transform.name },
            { "x", Input.mousePosition.x / Screen.width },
            { "y", Input.mousePosition.y / Screen.height },
        });
    }

    private void OnGUI()
    {
        string status = connection.IsConnected ? driver.AvatarState : "connecting...";
        GUI.Label(new Rect(10, 10, 300, 24), "companion: " + status);
        if (!string.IsNullOrEmpty(_bubble) && Time.time < _hideAt)
            GUI.Box(new Rect(Screen.width / 2 - 200, 40, 400, 80), _bubble);
    }
}
