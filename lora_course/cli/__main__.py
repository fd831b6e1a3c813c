"""``python -m lora_course.cli ...``: the ``lora-course`` command, for launchers that take a module (accelerate launch -m)."""

import sys

from lora_course.cli import main

sys.exit(main())
