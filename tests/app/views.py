from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import aget_object_or_404

from tests.app.models import Author


async def author_detail(request, pk):
    author = await aget_object_or_404(Author, pk=pk)
    return JsonResponse({"name": author.name, "books": await author.books.acount()})


async def create_author(request):
    author = await Author.objects.acreate(name=request.GET.get("name", "x"))
    return JsonResponse({"id": author.pk})


@transaction.non_atomic_requests
async def create_author_non_atomic(request):
    author = await Author.objects.acreate(name=request.GET.get("name", "x"))
    return JsonResponse({"id": author.pk, "in_atomic": transaction.get_connection().in_atomic_block})


async def create_then_fail(request):
    await Author.objects.acreate(name=request.GET.get("name", "x"))
    raise ValueError("boom")
