"""Sign-in protection (issue 9, item 11): a lockout after repeated failures on the login page and
the token endpoint (even the right password is refused, and nothing is hashed, until it expires),
a throttle on the token endpoint, tokens that expire and die with a password change, and Django's
four password validators."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.password_validation import validate_password
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.authtoken.models import Token

from experiments.api import auth

pytestmark = pytest.mark.django_db

LOCKED = "Too many failed sign-in attempts"


@pytest.fixture(autouse=True)
def _fresh_counters():
    caches[auth.SIGNIN_CACHE].clear()
    yield
    caches[auth.SIGNIN_CACHE].clear()


def page_login(client, username, password, **extra):
    return client.post("/login/", {"username": username, "password": password}, **extra)


def token_login(api_client, username, password, **extra):
    return api_client.post("/api/auth/token/", {"username": username, "password": password}, **extra)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


# The login page --------------------------------------------------------------------------------
def test_the_61st_try_on_the_login_page_is_refused_even_with_the_right_password(client, viewer, password, settings):
    statuses = [page_login(client, "vera", f"wrong-{i}").status_code for i in range(60)]
    assert statuses[: settings.SIGNIN_MAX_FAILURES] == [200] * settings.SIGNIN_MAX_FAILURES  # the form's error
    assert set(statuses[settings.SIGNIN_MAX_FAILURES :]) == {429}
    response = page_login(client, "vera", password)
    assert response.status_code == 429 and not signed_in(client)
    assert LOCKED in response.content.decode() and "try again in 15 minutes" in response.content.decode()
    assert int(response["Retry-After"]) > 14 * 60


def test_a_locked_out_try_hashes_no_password(client, viewer, password, settings, monkeypatch):
    for i in range(settings.SIGNIN_MAX_FAILURES):
        page_login(client, "vera", f"wrong-{i}")
    calls = []
    original = ModelBackend.authenticate
    monkeypatch.setattr(ModelBackend, "authenticate", lambda *a, **k: calls.append(1) or original(*a, **k))
    assert page_login(client, "vera", password).status_code == 429
    assert token_login(client, "vera", password).status_code == 429
    assert calls == []


def test_the_lockout_expires(client, viewer, password, settings, monkeypatch):
    for i in range(settings.SIGNIN_MAX_FAILURES):
        page_login(client, "vera", f"wrong-{i}")
    assert page_login(client, "vera", password).status_code == 429
    later = time.time() + settings.SIGNIN_LOCKOUT_MINUTES * 60 + 1
    monkeypatch.setattr(auth.time, "time", lambda: later)
    response = page_login(client, "vera", password)
    assert response.status_code == 302 and signed_in(client)


def test_the_lockout_is_per_username_and_address(client, viewer, editor, password, settings):
    for i in range(settings.SIGNIN_MAX_FAILURES):
        page_login(client, "vera", f"wrong-{i}")
    assert page_login(client, "VERA", password).status_code == 429  # usernames are counted case-blind
    assert page_login(client, "vera", password, REMOTE_ADDR="10.0.0.7").status_code == 302
    client.logout()
    assert page_login(client, "eddie", password).status_code == 302


def test_one_address_is_locked_out_after_guessing_at_many_usernames(client, viewer, password, settings):
    settings.SIGNIN_MAX_FAILURES_PER_IP = 5
    for i in range(5):
        page_login(client, f"someone-{i}", "guess")
    assert page_login(client, "vera", password).status_code == 429
    assert page_login(client, "vera", password, REMOTE_ADDR="10.0.0.8").status_code == 302


def test_a_good_sign_in_resets_the_count(client, viewer, password, settings):
    for i in range(settings.SIGNIN_MAX_FAILURES - 1):
        page_login(client, "vera", f"wrong-{i}")
    assert page_login(client, "vera", password).status_code == 302
    client.logout()
    for i in range(settings.SIGNIN_MAX_FAILURES - 1):
        page_login(client, "vera", f"wrong-{i}")
    assert page_login(client, "vera", password).status_code == 302


# The token endpoint -----------------------------------------------------------------------------
def test_the_61st_try_for_a_token_is_refused_even_with_the_right_password(api_client, viewer, password, settings,
                                                                           monkeypatch):  # fmt: skip
    monkeypatch.setattr(auth.SignInRateThrottle, "THROTTLE_RATES", {"signin": "1000/min"})
    statuses = [token_login(api_client, "vera", f"wrong-{i}").status_code for i in range(60)]
    assert statuses[: settings.SIGNIN_MAX_FAILURES] == [400] * settings.SIGNIN_MAX_FAILURES
    assert set(statuses[settings.SIGNIN_MAX_FAILURES :]) == {429}
    response = token_login(api_client, "vera", password)
    assert response.status_code == 429 and "token" not in response.json()
    assert LOCKED in response.json()["detail"] and int(response["Retry-After"]) > 0
    assert not Token.objects.filter(user=viewer).exists()


def test_the_token_endpoint_is_throttled_per_address(api_client, viewer, password, monkeypatch):
    monkeypatch.setattr(auth.SignInRateThrottle, "THROTTLE_RATES", {"signin": "3/min"})
    assert [token_login(api_client, "vera", password).status_code for _ in range(3)] == [200, 200, 200]
    assert token_login(api_client, "vera", password).status_code == 429
    assert token_login(api_client, "vera", password, REMOTE_ADDR="10.0.0.9").status_code == 200


def test_a_lockout_on_the_page_holds_for_the_token_endpoint(client, api_client, viewer, password, settings):
    for i in range(settings.SIGNIN_MAX_FAILURES):
        page_login(client, "vera", f"wrong-{i}")
    assert token_login(api_client, "vera", password).status_code == 429


# Tokens ------------------------------------------------------------------------------------------
def test_an_expired_token_is_a_401_and_a_new_one_is_issued(api_client, viewer, password, settings):
    first = token_login(api_client, "vera", password).json()
    assert first["expires_at"]
    Token.objects.filter(key=first["token"]).update(created=timezone.now() - timedelta(hours=settings.API_TOKEN_TTL_HOURS, minutes=1))
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {first['token']}")
    response = api_client.get("/api/projects/")
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    # The expired token in the header does not stop asking for a new one.
    second = token_login(api_client, "vera", password).json()["token"]
    assert second != first["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert api_client.get("/api/projects/").status_code == 200


def test_a_token_within_its_lifetime_works(api_client, viewer, password, settings):
    key = token_login(api_client, "vera", password).json()["token"]
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(hours=settings.API_TOKEN_TTL_HOURS - 1))
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api_client.get("/api/projects/").status_code == 200


def test_tokens_never_expire_with_a_ttl_of_zero(api_client, viewer, password, settings):
    settings.API_TOKEN_TTL_HOURS = 0
    body = token_login(api_client, "vera", password).json()
    assert body["expires_at"] is None
    Token.objects.filter(key=body["token"]).update(created=timezone.now() - timedelta(days=3650))
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert api_client.get("/api/projects/").status_code == 200


def test_a_password_change_on_the_page_revokes_the_tokens(client, api_client, viewer, password):
    key = token_login(api_client, "vera", password).json()["token"]
    client.login(username="vera", password=password)
    new = "a-Much-longer-new-passphrase-9"
    response = client.post("/account/password/", {"old_password": password, "new_password1": new,
                                                   "new_password2": new})  # fmt: skip
    assert response.status_code == 302
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api_client.get("/api/projects/").status_code == 401
    assert not Token.objects.filter(user=viewer).exists()


def test_set_password_anywhere_revokes_the_tokens(api_client, viewer, password):
    key = token_login(api_client, "vera", password).json()["token"]
    viewer.set_password("another-long-passphrase-42")
    viewer.save()
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api_client.get("/api/projects/").status_code == 401


def test_saving_a_user_without_a_new_password_keeps_the_tokens(api_client, viewer, password):
    key = token_login(api_client, "vera", password).json()["token"]
    viewer.first_name = "Vera"
    viewer.save()
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api_client.get("/api/projects/").status_code == 200


# Password validators -------------------------------------------------------------------------------
def test_all_digit_passwords_are_refused():
    with pytest.raises(ValidationError, match="entirely numeric"):
        validate_password("8274619305127")


def test_signup_refuses_an_all_digit_password(client, settings):
    settings.SIGNUP_ENABLED = True
    response = client.post("/signup/", {"username": "nina", "email": "nina@example.com",
                                        "password1": "8274619305127", "password2": "8274619305127"})  # fmt: skip
    assert response.status_code == 200 and "entirely numeric" in response.content.decode()


def test_signup_still_signs_the_new_user_in(client, settings):
    settings.SIGNUP_ENABLED = True
    response = client.post("/signup/", {"username": "nina", "email": "nina@example.com",
                                        "password1": "river-stone-lamp-7", "password2": "river-stone-lamp-7"})  # fmt: skip
    assert response.status_code == 302 and signed_in(client)
    assert client.get("/").status_code == 200
