"""Autograding the course exercises with nbgrader: repair, sandbox, grade, feed back without hidden tests."""
