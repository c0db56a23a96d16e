"""`python -m unity_bridge`: the bridge worker (started by the supervisor, not by hand)."""

from unity_bridge.worker import main

if __name__ == "__main__":
    main()
