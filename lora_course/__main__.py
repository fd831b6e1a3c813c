"""``python -m lora_course``: the ``lora-course`` command, where its script is not on PATH."""

import sys

from lora_course.cli import main

sys.exit(main())
