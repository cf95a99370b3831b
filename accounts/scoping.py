"""What an investigator may see: the one place that decides which rows a viewer's querysets hold.

Deny by default. Exchange analysts (and superusers) see everything; a partner analyst sees only what concerns
their platform; anyone else (a staff account without an analyst profile, an inactive user, an anonymous
visitor) sees nothing, whatever Django permissions they carry. `scope_of()` decides which of the three a
viewer is, and `ScopedQuerySet.visible_to()` turns that into rows: everything and nothing are decided here
for every model, and only the partner's share is written next to each model, as its queryset's
`of_partner()`. A model that writes none shows a partner analyst nothing.

Every admin `get_queryset()` goes through `visible_to()` (`accounts.admin.ScopedModelAdmin`, which refuses a
model whose queryset is not a `ScopedQuerySet`), so a partner analyst who types another platform's URL gets
a 404, not a page. This module loads no admin: models import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Self, TypeVar

from django.db import models

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    type User = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True, slots=True)
class Scope:
    """Everything (`platform_id` None and `everything` True), one platform, or nothing."""

    everything: bool
    platform_id: int | None

    @property
    def nothing(self) -> bool:
        return not self.everything and self.platform_id is None

    @property
    def is_partner(self) -> bool:
        return not self.everything and self.platform_id is not None


NOTHING = Scope(everything=False, platform_id=None)
EVERYTHING = Scope(everything=True, platform_id=None)


def scope_of(user: User) -> Scope:
    if not user.is_authenticated or not getattr(user, "is_active", False):
        return NOTHING
    if getattr(user, "is_superuser", False):
        return EVERYTHING
    if not getattr(user, "is_staff", False):
        return NOTHING
    profile = getattr(user, "analyst", None)
    if profile is None:
        return NOTHING
    if profile.platform_id is None:
        return EVERYTHING
    return Scope(everything=False, platform_id=profile.platform_id)


# Covariant like QuerySet's own parameter, so that two models' querysets join to a QuerySet (the PEP 695
# syntax infers a variance that joins them to `object`).
M_co = TypeVar("M_co", bound=models.Model, covariant=True)


class ScopedQuerySet(models.QuerySet[M_co]):
    """The base of every queryset the admin shows: `visible_to(user)` is what that user may see."""

    def visible_to(self, user: User) -> Self:
        scope = scope_of(user)
        if scope.everything:
            return self.all()
        if scope.platform_id is None:
            return self.none()
        return self.of_partner(scope.platform_id)

    def of_partner(self, platform_id: int) -> Self:
        """What a partner analyst of `platform_id` sees: nothing, unless the model's queryset says more."""
        return self.none()
