"""Partner API v1 views. Thin and declarative: scoping to the caller's platform happens in
`PartnerScopedMixin.get_queryset()` and nowhere else."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import Partner


class MeView(APIView):
    """Who am I: the calling key's platform and scopes (handy to check a key works)."""

    required_scope = "read"

    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "platform": serializers.CharField(),
                "key_prefix": serializers.CharField(),
                "scopes": serializers.ListField(child=serializers.CharField()),
            },
        )
    )
    def get(self, request: Request) -> Response:
        partner = request.user
        assert isinstance(partner, Partner)
        return Response(
            {
                "platform": partner.platform.slug,
                "key_prefix": partner.api_key.prefix,
                "scopes": partner.api_key.scopes,
            }
        )
