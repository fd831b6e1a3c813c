"""Plain nbgrader on this repository (``nbgrader generate_assignment 02-lora-layer --config autograder/nbgrader_config.py``
from the repository root). ``lora-course grade`` does not use this file: it builds its own course directory."""

import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file
c.CourseDirectory.root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.course_id = "lora-course"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "variants"]
