from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import path

from guestbook import views

urlpatterns = [
    path("", views.index, name="index"),
    path("health/", views.health, name="health"),
    path("admin/", admin.site.urls),
] + static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
