from django.contrib import admin
from django.contrib.staticfiles.views import serve
from django.urls import path, re_path

from gateway.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # daphne serves no static files; the admin's few assets come straight from the apps.
    re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True}),
]
