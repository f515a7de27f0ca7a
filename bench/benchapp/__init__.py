"""Models for the ORM benchmark (``bench/orm.py``): nothing else uses them."""
