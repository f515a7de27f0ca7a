"""Tables the scenarios write; created by the runner with the schema editor."""

from django.db import models


class Account(models.Model):
    """A balance that transfers move money between: the total never changes."""

    balance = models.BigIntegerField()


class Transfer(models.Model):
    """One leg of money moved, written in the transaction that moves it."""

    task = models.IntegerField()
    src = models.IntegerField()
    dst = models.IntegerField()
    amount = models.IntegerField()
    kind = models.CharField(max_length=20)


class Pair(models.Model):
    """Two rows per request, written in one transaction: never one alone."""

    request = models.IntegerField(db_index=True)
    half = models.SmallIntegerField()


MODELS = (Account, Transfer, Pair)
