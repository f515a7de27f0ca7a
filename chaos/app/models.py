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


class Piece(models.Model):
    """One of a block's rows (scenario 9): a block has all of its pieces or none."""

    block = models.IntegerField(db_index=True)
    part = models.SmallIntegerField()
    # PostgreSQL: the COMMIT of the transaction that wrote this row sleeps
    # this many milliseconds (a deferred constraint trigger, chaos.scenarios.cancels).
    commit_ms = models.IntegerField(default=0)


class Callback(models.Model):
    """Written by a block's async ``on_commit`` callback, after its COMMIT (scenario 9)."""

    block = models.IntegerField()


MODELS = (Account, Transfer, Pair, Piece, Callback)
