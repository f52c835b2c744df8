"""A minimal Django project in one module (settings.configure), for tests/functional/test_wsgi_apps.py."""

from __future__ import annotations

import json

import django
from django.conf import settings
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

settings.configure(
    DEBUG=False, SECRET_KEY="test-only", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], INSTALLED_APPS=[],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"], USE_TZ=True,
)
django.setup()


def index(request):
    return HttpResponse("django index", content_type="text/plain")


def item(request, number):
    return JsonResponse({"item": number, "path": request.path, "script": request.META["SCRIPT_NAME"]})


def form(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    return JsonResponse({"form": request.POST.dict(), "secure": request.is_secure()})


def json_body(request):
    return JsonResponse({"received": json.loads(request.body), "length": len(request.body)})


def stream(request):
    return StreamingHttpResponse((b"row %d\n" % index for index in range(50)), content_type="text/plain")


urlpatterns = [
    path("", index), path("items/<int:number>", item), path("form", form), path("json", json_body),
    path("stream", stream),
]

from django.core.wsgi import get_wsgi_application  # noqa: E402  (after settings.configure)

application = get_wsgi_application()
