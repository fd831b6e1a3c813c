"""Plain nbgrader on this repository or on an exported course folder: run nbgrader in this folder
(``cd autograder && nbgrader generate_assignment 02-lora-layer --force`` writes exercises/02-lora-layer/ from
solutions/; nbgrader reads the nbgrader_config.py of the current folder and has no --config option).
``lora-course grade`` does not use this file: it builds its own course directory."""

import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file
c.CourseDirectory.root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.course_id = "lora-course"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "variants"]
