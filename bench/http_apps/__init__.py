"""Alternative servers for ``bench/http.py``: the same two endpoints on other async stacks.

See README.md here for what each one is and how to start it.
"""
