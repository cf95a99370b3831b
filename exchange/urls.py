from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

import exchange.converters  # noqa: F401  (registers the seller_ref and cluster_ref path converters)
from exchange import views

api_v1: list[URLPattern | URLResolver] = [
    path("me/", views.MeView.as_view(), name="me"),
    path("submissions/", views.SubmissionView.as_view(), name="submissions"),
    path("sellers/", views.SellerListView.as_view(), name="seller-list"),
    path("sellers/<seller_ref:seller_ref>/", views.SellerDetailView.as_view(), name="seller-detail"),
    path("sellers/<seller_ref:seller_ref>/retract/", views.RetractView.as_view(), name="seller-retract"),
    path("sellers/<seller_ref:seller_ref>/appeals/", views.AppealView.as_view(), name="seller-appeals"),
    path("lookups/", views.LookupView.as_view(), name="lookups"),
    path("hashing-spec/", views.hashing_spec, name="hashing-spec"),
    # graph's part of the API, named by string: the root URLconf composes the apps (exchange imports no graph).
    path("", include("graph.api")),
    path(
        "schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="schema",
    ),
    path(
        "docs/",
        # The split view serves Swagger UI's initialiser as a script file, so the CSP needs no inline script.
        SpectacularSwaggerSplitView.as_view(
            url_name="api:schema", authentication_classes=[], permission_classes=[AllowAny]
        ),
        name="docs",
    ),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"))),
    # TAXII 2.1 (graph's, named by string like its part of the API): actor clusters as STIX for TIP tools.
    path("taxii2/", include("graph.taxii")),
]
if settings.OIDC_ENABLED:  # single sign-on for the admin (accounts/oidc.py)
    urlpatterns.append(path("oidc/", include("mozilla_django_oidc.urls")))

handler400 = "exchange.errors.json_or_default_400"
handler404 = "exchange.errors.json_or_default_404"
handler500 = "exchange.errors.json_or_default_500"
