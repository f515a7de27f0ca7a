"""Two small related models, shaped like a typical app's.

The benchmark creates their tables itself (schema editor), so the app has no
migrations.
"""

from django.db import models


class Author(models.Model):
    """A book author."""

    name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)


class Book(models.Model):
    """A book; the foreign key gives ``select_related`` something to join."""

    title = models.CharField(max_length=200)
    author = models.ForeignKey(Author, related_name="books", on_delete=models.CASCADE)
    pages = models.IntegerField(default=100)
    published = models.DateTimeField(null=True)
