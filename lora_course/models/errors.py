class ModelNotAvailableError(OSError):
    """A model name that is neither a local path, reachable on the hub, nor available offline.

    The message lists every place that was tried, so the user can see which one to fix.
    """

    def __init__(self, name: str, tried: list[str], hint: str = ""):
        self.name = name
        self.tried = list(tried)
        lines = [f"Could not load model {name!r}. Tried, in order:"]
        lines += [f"  - {t}" for t in tried]
        lines.append(
            hint
            or "Fix: pass a local model directory, connect to the Hugging Face hub, or use one of the "
            "models available offline (lora_course.models.offline.OFFLINE_MODELS)."
        )
        super().__init__("\n".join(lines))
