"""Minimal bridge worker until the TCP server lands: joins the bus and stays ready."""

from workers.runtime import WorkerRuntime


def main() -> None:
    rt = WorkerRuntime.from_stdin()
    rt.ready({"clients": 0})
    rt.run()


if __name__ == "__main__":
    main()
