from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render

from .forms import EntryForm
from .models import Entry


def index(request):
    form = EntryForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        return redirect("index")
    entries = Entry.objects.all()[:50]
    return render(request, "guestbook/index.html", {"form": form, "entries": entries})


def health(request):
    """Answers 200 once Django and the database respond."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
