"""API tokens that expire API_TOKEN_TTL_HOURS after they were issued (0: never) and die with a
password change. Apart from experiments/api/auth.py because DRF imports the authentication class
while rest_framework.views itself is being imported: this module must not import DRF's views."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed


def token_expired(token: Token) -> bool:
    ttl = settings.API_TOKEN_TTL_HOURS
    return bool(ttl) and token.created < timezone.now() - timedelta(hours=ttl)


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            raise AuthenticationFailed("Token expired; get a new one from POST /api/auth/token/.")
        return user, token


class RevokeTokensOnPasswordChange:
    """Listed in AUTH_PASSWORD_VALIDATORS, though it refuses no password: Django calls every
    validator's password_changed() whenever a new password is saved (the password page, the
    admin, `manage.py changepassword`), the one place that sees every change."""

    def validate(self, password, user=None) -> None:
        return None

    def password_changed(self, password, user=None) -> None:
        if user is not None and user.pk is not None:
            Token.objects.filter(user=user).delete()

    def get_help_text(self) -> str:
        return "Changing your password signs out every API token of your account."
