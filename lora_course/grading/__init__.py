"""Autograding the course exercises with nbgrader: repair, sandbox, grade, feed back without hidden tests.

Public entry points:

* ``pipeline.grade(assignment, submissions, out_dir, jobs=2, limits=Limits(...), course=None)`` -> summary dict
  (also ``lora-course grade ASSIGNMENT SUBMISSIONS --out DIR [--course COURSE]``);
* ``course.course_root(course=None)``: the course folder graded from (``--course``, LORA_COURSE_REPO, the current
  folder, the checkout); ``course.export_course(src, dest)`` (``lora-course course export DIR``) writes one;
* ``course.make_course(dir, assignment)``, ``course.student_versions(names)`` (what ``autograder/build.py`` uses);
* ``repair.repair(student_nb, release_nb)`` -> ``Repaired(notebook, notes)``; ``repair.load_notebook(bytes, name)``;
* ``catalog.check(assignment)``: the wrong / alternative answers graded through the autograder;
* ``synthetic.synthetic_class(folder)``: a class of every kind of submission, with the grades it must get.
"""
