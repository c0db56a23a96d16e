// GameObject > AI Companion > Companion: a ready companion object in the open scene, with
// CompanionConnection and AvatarDriver wired together (undoable, parented to the selection
// like Unity's own GameObject menu items).
using UnityEditor;
using UnityEngine;

namespace AICompanion.Bridge.Editor
{
    public static class CompanionMenu
    {
        public const string MenuPath = "GameObject/AI Companion/Companion";

        [MenuItem(MenuPath, false, 10)]
        private static void CreateCompanion(MenuCommand command)
        {
            var go = new GameObject("Companion");
            var connection = go.AddComponent<CompanionConnection>();
            var driver = go.AddComponent<AvatarDriver>();
            driver.connection = connection;
            GameObjectUtility.SetParentAndAlign(go, command.context as GameObject);
            Undo.RegisterCreatedObjectUndo(go, "Create AI Companion");
            Selection.activeObject = go;
        }
    }
}
