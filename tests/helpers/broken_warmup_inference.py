"""The real inference worker with its warm-up broken: an unexpected failure late in the load."""

from workers.inference import worker


def _explode(self: worker.InferenceWorker) -> float:
    raise RuntimeError("warm-up exploded (injected by broken_warmup_inference)")


worker.InferenceWorker._warm_up = _explode  # type: ignore[method-assign]
worker.main()
