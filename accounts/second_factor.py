"""The admin login's second step: a TOTP code (django-otp), or enrolment of a first TOTP device.

After the password (the admin login page, rate-limited) a user whom the policy (`EXCHANGE_ADMIN_2FA`,
`accounts.roles.second_factor_required`) requires to hold a second factor is sent here: with a confirmed device
they enter its current code; without one they are shown a new device's secret (as text, as an otpauth:// URI
and as a QR code rendered server-side as SVG) and confirm it with a code. Until then the admin site refuses
them every page (`ExchangeAdminSite.has_permission`). Wrong codes count against the same login limit as
wrong passwords, and django-otp's per-device throttle doubles the wait after each wrong code.
"""

from __future__ import annotations

from base64 import b32encode
from typing import Any

import segno
from django import forms
from django.contrib.auth import get_user_model, logout
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.login import rate_limited
from accounts.models import AuditEntry
from accounts.roles import second_factor_required

DEVICE_NAME = "admin login"

User = AbstractBaseUser | AnonymousUser


def is_verified(user: User) -> bool:
    """True when this request's session passed a second factor (set by django-otp's OTPMiddleware)."""
    verified = getattr(user, "is_verified", None)
    return bool(callable(verified) and verified())


def second_factor_satisfied(user: User) -> bool:
    return not second_factor_required(user) or is_verified(user)


def awaiting_second_factor(user: User) -> bool:
    """Past the password, not yet past the second factor the policy asks of them."""
    return (
        user.is_authenticated
        and bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))
        and not second_factor_satisfied(user)
    )


def confirmed_device(user: AbstractBaseUser) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).order_by("pk").first()


def pending_device(user: AbstractBaseUser) -> TOTPDevice:
    """The unconfirmed device this user is enrolling (the same one on every visit until confirmed)."""
    device = TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user_id=user.pk, name=DEVICE_NAME, confirmed=False)


def do_replace_totp_device(user: AbstractBaseUser, actor: str) -> TOTPDevice:
    """Give `user` one new confirmed TOTP device instead of any they had (an operator's enrolment, or the
    recovery of a lost phone); the caller hands its otpauth URI to the analyst."""
    with transaction.atomic(durable=True):
        TOTPDevice.objects.filter(user_id=user.pk).delete()
        device = TOTPDevice.objects.create(user_id=user.pk, name=DEVICE_NAME, confirmed=True)
        AuditEntry.objects.record(
            "admin_2fa_device_replaced", actor, object_type="user", object_id=str(user.pk)
        )
    return device


def do_confirm_enrolment(device: TOTPDevice, actor: str) -> None:
    with transaction.atomic(durable=True):
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        AuditEntry.objects.record(
            "admin_2fa_enrolled", actor, object_type="user", object_id=str(device.user_id)
        )


def secret_of(device: TOTPDevice) -> str:
    """The base32 secret an authenticator app asks for when typed in by hand."""
    return b32encode(device.bin_key).decode().rstrip("=")


def qr_svg(uri: str) -> str:
    # segno writes a plain <svg> with a <path>: no script, no style attribute, so it passes the CSP.
    return mark_safe(segno.make(uri, error="m").svg_inline(scale=4, border=2))  # noqa: S308


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code from your authenticator app",
        max_length=12,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True, "size": 8}
        ),
    )

    def clean_code(self) -> str:
        code = "".join(self.cleaned_data["code"].split())
        if not code.isdigit() or len(code) != 6:
            raise forms.ValidationError("Enter the 6-digit code your authenticator app shows.")
        return code


def next_url(request: HttpRequest) -> str:
    target = str(request.POST.get("next") or request.GET.get("next") or "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse("admin:index")


def _step(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    user = request.user
    target = next_url(request)
    if not user.is_authenticated or not awaiting_second_factor(user):
        # Not past the password: back to it. Already past the second factor: on to the admin.
        return HttpResponseRedirect(target if user.is_authenticated else reverse("admin:login"))
    if request.method == "POST" and "cancel" in request.POST:
        # Django's admin logout admits only users the site admits; this is the way out of the second step.
        logout(request)
        return HttpResponseRedirect(reverse("admin:login"))
    account = get_user_model().objects.get(pk=user.pk)
    device = confirmed_device(account)
    enrolling = device is None
    device = device or pending_device(account)
    form = CodeForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        if device.verify_token(form.cleaned_data["code"]):
            if enrolling:
                do_confirm_enrolment(device, account.get_username())
            request.session.cycle_key()  # a new session id once the login is complete
            otp_login(request, device)
            return HttpResponseRedirect(target)
        form.add_error("code", "That code is wrong or has expired (or too many tries: wait a moment).")
    context: dict[str, Any] = {
        **(extra_context or {}),
        "title": "Set up your second factor" if enrolling else "Second factor",
        "form": form,
        "enrolling": enrolling,
        "next": target,
        "username": account.get_username(),
    }
    if enrolling:
        uri = device.config_url
        context.update(secret=secret_of(device), otpauth_uri=uri, qr_svg=qr_svg(uri))
    # 200 for a form shown again after a POST: the login limit counts it as a failed attempt.
    return TemplateResponse(request, "admin/second_factor.html", context)


_limited_step = rate_limited(_step)


def second_factor_step(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """The view. The login limit counts failures by the posted username; on this step that is always the
    session's own user, whatever the form posted, so a wrong code counts against the account it tries."""
    if request.method == "POST" and request.user.is_authenticated:
        post = request.POST.copy()
        post["username"] = request.user.get_username()
        request.POST = post  # type: ignore[assignment]
    return _limited_step(request, extra_context)
