"""Accounts and teams: sign-up (and its switch), password change, members (invite by username or
email, change roles, remove, the last owner), the activity log and comments, in pages and API."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.urls import reverse

from experiments.choices import Role
from experiments.models import ActivityLog, ActivityVerb, Artifact, Comment, Experiment, Membership, Project
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-much-longer-passphrase-7"




def verbs(project) -> list[str]:
    """The project's activity, oldest first, as "actor verb" strings."""
    return [f"{a.actor} {a.verb}" for a in ActivityLog.objects.filter(project=project).order_by("created_at", "id")]


def last_activity(project) -> ActivityLog:
    return ActivityLog.objects.filter(project=project).order_by("-created_at", "-id").first()


# Sign-up -------------------------------------------------------------------------------------------
def signup_data(**overrides) -> dict:
    return {"username": "newton", "email": "Newton@Example.com", "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD, **overrides}  # fmt: skip


def test_it_signs_up_and_logs_in(client, settings):
    settings.SIGNUP_ENABLED = True
    assert 'href="/signup/"' in client.get(reverse("login")).content.decode()
    response = client.post(reverse("signup"), signup_data())
    assert response.status_code == 302 and response["Location"] == reverse("project-list")
    user = get_user_model().objects.get(username="newton")
    assert user.email == "Newton@example.com" and user.check_password(NEW_PASSWORD)  # domain normalised
    html = client.get(reverse("project-list")).content.decode()
    assert "newton" in html  # logged in


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"email": "OLIVIA@example.com"}, "email", "an account with this email already exists"),
        ({"username": "olivia"}, "username", "A user with that username already exists."),
        ({"password2": "something-else-entirely"}, "password2", "The two password fields didn"),
        ({"email": ""}, "email", "This field is required."),
    ],
)
def test_it_shows_sign_up_errors_by_field(client, settings, owner, overrides, field, message):
    settings.SIGNUP_ENABLED = True
    response = client.post(reverse("signup"), signup_data(**overrides))
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert not get_user_model().objects.filter(username="newton").exists()


def test_it_turns_sign_up_off_and_hides_the_link(client, settings):
    settings.SIGNUP_ENABLED = False
    assert client.get(reverse("signup")).status_code == 404
    assert client.post(reverse("signup"), signup_data()).status_code == 404
    assert not get_user_model().objects.filter(username="newton").exists()
    assert reverse("signup") not in client.get(reverse("login")).content.decode()


def test_the_admin_creates_users_with_sign_up_off(client, settings, django_user_model):
    settings.SIGNUP_ENABLED = False
    admin = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    client.force_login(admin)
    response = client.post("/admin/auth/user/add/", {"username": "hired", "password1": NEW_PASSWORD,
                                                     "password2": NEW_PASSWORD, "usable_password": "true"})  # fmt: skip
    assert response.status_code == 302
    assert django_user_model.objects.filter(username="hired").exists()


def test_it_sends_signed_in_users_away_from_sign_up(login, settings, owner):
    settings.SIGNUP_ENABLED = True
    assert login(owner).get(reverse("signup"))["Location"] == reverse("project-list")


# Password change -----------------------------------------------------------------------------------
def test_it_changes_the_password_and_keeps_the_session(login, owner):
    client = login(owner)
    page = client.get(reverse("password-change"))
    assert page.status_code == 200
    assert f'href="{reverse("password-change")}"' in page.content.decode()  # in the nav
    response = client.post(reverse("password-change"), {"old_password": PASSWORD, "new_password1": NEW_PASSWORD,
                                                         "new_password2": NEW_PASSWORD})  # fmt: skip
    assert response["Location"] == reverse("password-change-done")
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
    assert client.get(reverse("password-change-done")).status_code == 200
    assert client.get(reverse("project-list")).status_code == 200  # still logged in


def test_it_refuses_a_wrong_old_password(login, owner):
    response = login(owner).post(reverse("password-change"), {"old_password": "nope", "new_password1": NEW_PASSWORD,
                                                              "new_password2": NEW_PASSWORD})  # fmt: skip
    assert response.status_code == 200
    assert "old_password" in response.context["form"].errors
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_it_asks_anonymous_users_to_log_in_for_a_password_change(client):
    assert client.get(reverse("password-change"))["Location"].startswith(reverse("login"))


# Members (pages) -----------------------------------------------------------------------------------
def members_url(project) -> str:
    return reverse("project-members", args=[project.pk])


def test_it_invites_by_username(login, owner, outsider, project):
    response = login(owner).post(members_url(project), {"user": "oscar", "role": "editor"})
    assert response.status_code == 302
    assert project.role_of(outsider) == Role.EDITOR
    entry = last_activity(project)
    assert (entry.verb, entry.user, entry.target_repr, entry.details) == (
        ActivityVerb.MEMBER_INVITED, owner, "oscar", {"role": "editor"}
    )
    assert entry.summary == "invited oscar as editor"


def test_it_invites_by_email_whatever_the_case(login, owner, outsider, project):
    login(owner).post(members_url(project), {"user": "  OSCAR@Example.COM ", "role": "viewer"})
    assert project.role_of(outsider) == Role.VIEWER


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("nobody", "no user called 'nobody'"),
        ("nobody@example.com", "no user with the email 'nobody@example.com'"),
        ("vera", "vera is already a member (viewer); change their role instead."),
    ],
)
def test_it_explains_why_an_invitation_failed(login, owner, project, typed, message):
    response = login(owner).post(members_url(project), {"user": typed, "role": "editor"})
    assert response.status_code == 200
    assert response.context["form"].errors["user"] == [message]
    assert Membership.objects.filter(project=project).count() == 3


def test_it_refuses_an_ambiguous_email(login, owner, project, django_user_model):
    django_user_model.objects.create_user("twin1", "twin@example.com", PASSWORD)
    django_user_model.objects.create_user("twin2", "TWIN@example.com", PASSWORD)
    response = login(owner).post(members_url(project), {"user": "twin@example.com", "role": "viewer"})
    assert "several users have the email" in response.context["form"].errors["user"][0]


def test_it_changes_a_role_and_removes_a_member(login, owner, viewer, project):
    client = login(owner)
    response = client.post(reverse("project-member-role", args=[project.pk, "vera"]), {"role": "editor"})
    assert response.status_code == 302
    assert project.role_of(viewer) == Role.EDITOR
    assert last_activity(project).summary == "changed the role of vera from viewer to editor"
    response = client.post(reverse("project-member-remove", args=[project.pk, "vera"]))
    assert response.status_code == 302
    assert project.role_of(viewer) is None
    assert last_activity(project).verb == ActivityVerb.MEMBER_REMOVED
    assert client.post(reverse("project-member-remove", args=[project.pk, "vera"])).status_code == 404


def test_it_keeps_the_last_owner(login, owner, project):
    client = login(owner)
    html = client.get(members_url(project)).content.decode()
    assert "only owner" in html  # no remove button for the only owner
    response = client.post(reverse("project-member-role", args=[project.pk, "olivia"]), {"role": "viewer"}, follow=True)
    assert "A project needs at least one owner" in response.content.decode()
    response = client.post(reverse("project-member-remove", args=[project.pk, "olivia"]), follow=True)
    assert "A project needs at least one owner" in response.content.decode()
    assert project.role_of(owner) == Role.OWNER
    with pytest.raises(Exception, match="at least one owner"):
        project.remove_member(owner)


def test_an_owner_can_leave_once_there_is_another(login, owner, editor, project):
    client = login(owner)
    client.post(reverse("project-member-role", args=[project.pk, "eddie"]), {"role": "owner"})
    response = client.post(reverse("project-member-remove", args=[project.pk, "olivia"]))
    assert response["Location"] == reverse("project-list")
    assert project.role_of(owner) is None and project.role_of(editor) == Role.OWNER


def test_it_refuses_member_changes_to_non_owners(login, editor, viewer, outsider, project):
    for user in (editor, viewer):
        client = login(user)
        html = client.get(members_url(project)).content.decode()
        assert "olivia" in html and 'id="invite-form"' not in html and "project-member-role" not in html
        assert client.post(members_url(project), {"user": "oscar", "role": "owner"}).status_code == 403
        assert client.post(reverse("project-member-role", args=[project.pk, "vera"]), {"role": "owner"}).status_code == 403
        assert client.post(reverse("project-member-remove", args=[project.pk, "olivia"])).status_code == 403
    assert project.role_of(outsider) is None
    assert Membership.objects.filter(project=project, role=Role.OWNER).count() == 1


def test_it_hides_the_members_page_from_non_members(login, outsider, project):
    client = login(outsider)
    assert client.get(members_url(project)).status_code == 404
    assert client.post(members_url(project), {"user": "oscar", "role": "owner"}).status_code == 404
    assert client.post(reverse("project-member-remove", args=[project.pk, "olivia"])).status_code == 404
    assert project.role_of(outsider) is None


# Members (API) -------------------------------------------------------------------------------------
def test_the_api_invites_by_email(owner_client, project, outsider):
    url = f"/api/projects/{project.pk}/members/"
    response = owner_client.post(url, {"email": "Oscar@EXAMPLE.com", "role": "editor"}, format="json")
    assert response.status_code == 200
    assert project.role_of(outsider) == Role.EDITOR
    response = owner_client.post(url, {"email": "ghost@example.com"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"email": ["no user with the email 'ghost@example.com'"]}
    assert owner_client.post(url, {"role": "editor"}, format="json").json() == {
        "username": ["give the username or the email of an existing user"]
    }
    assert [a.verb for a in ActivityLog.objects.filter(project=project, verb__startswith="member.")] == [
        ActivityVerb.MEMBER_INVITED
    ]


# Activity ------------------------------------------------------------------------------------------
def test_it_records_start_and_cancel_with_who_did_it(editor_client, viewer_client, experiment, project, enqueue_calls):
    assert editor_client.post(f"/api/experiments/{experiment.pk}/start/").status_code == 200
    assert viewer_client.post(f"/api/experiments/{experiment.pk}/cancel/").status_code == 403
    assert editor_client.post(f"/api/experiments/{experiment.pk}/resume/").status_code == 409  # nothing logged
    assert editor_client.post(f"/api/experiments/{experiment.pk}/cancel/").status_code == 200
    assert verbs(project)[-2:] == ["eddie experiment.started", "eddie experiment.cancelled"]
    entry = last_activity(project)
    assert entry.target_type == "experiment" and entry.target_id == experiment.pk
    assert entry.target_url == reverse("experiment-detail", args=[experiment.pk])
    assert entry.summary == f"cancelled experiment {experiment.name}"


def test_it_records_actions_from_the_pages(login, editor, experiment, project, enqueue_calls):
    client = login(editor)
    client.post(reverse("experiment-action", args=[experiment.pk, "start"]))
    client.post(reverse("experiment-action", args=[experiment.pk, "pause"]))
    assert verbs(project)[-2:] == ["eddie experiment.started", "eddie experiment.paused"]


def test_it_records_creation_cloning_and_datasets(editor_client, project, digits_dataset, iris_dataset, experiment):
    response = editor_client.post(f"/api/experiments/{experiment.pk}/clone/")
    assert response.status_code == 201
    clone = last_activity(project)
    assert (clone.actor, clone.verb, clone.target_id) == ("eddie", ActivityVerb.EXPERIMENT_CLONED, response.json()["id"])
    assert clone.suffix == f" from “{experiment.name}”"
    assert editor_client.delete(f"/api/datasets/{iris_dataset.pk}/").status_code == 204
    assert editor_client.delete(f"/api/datasets/{digits_dataset.pk}/").status_code == 409  # in use: not logged
    assert verbs(project) == [
        "olivia dataset.uploaded", "olivia dataset.uploaded", "olivia experiment.created",
        "eddie experiment.cloned", "eddie dataset.deleted",
    ]  # fmt: skip


def test_it_records_downloads(viewer_client, outsider_client, experiment, trial_factory, project, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    trial = trial_factory(experiment, state="completed", objective=0.9)
    artifact = Artifact(experiment=experiment, trial=trial, kind="model_zip", size_bytes=5)
    artifact.file.save("best_model.zip", ContentFile(b"PK..."), save=True)
    assert outsider_client.get(f"/api/artifacts/{artifact.pk}/download/").status_code == 404
    response = viewer_client.get(f"/api/artifacts/{artifact.pk}/download/")
    assert response.status_code == 200
    entry = last_activity(project)
    assert (entry.actor, entry.verb) == ("vera", ActivityVerb.MODEL_DOWNLOADED)
    assert entry.summary == f"downloaded Model package (ZIP) of {experiment.name} (trial #{trial.number})"
    assert entry.target_url == reverse("trial-detail", args=[trial.pk])
    assert ActivityLog.objects.filter(verb=ActivityVerb.MODEL_DOWNLOADED).count() == 1


def test_it_shows_the_latest_activity_on_the_project_page(login, viewer, project):
    for i in range(25):
        ActivityLog.record(project, viewer, ActivityVerb.EXPERIMENT_STARTED, description=f"run-{i:02d}")
    html = login(viewer).get(reverse("project-detail", args=[project.pk])).content.decode()
    assert "run-24" in html and "run-05" in html and "run-04" not in html
    assert reverse("project-activity", args=[project.pk]) in html


def test_it_pages_the_activity_log(login, viewer, outsider, project):
    for i in range(60):
        ActivityLog.record(project, viewer, ActivityVerb.EXPERIMENT_STARTED, description=f"run-{i:02d}")
    client = login(viewer)
    url = reverse("project-activity", args=[project.pk])
    first = client.get(url).content.decode()
    assert "run-59" in first and "run-10" in first and "run-09" not in first
    assert "Page 1 of 2" in first
    second = client.get(url + "?page=2").content.decode()
    assert "run-09" in second and "run-59" not in second
    assert login(outsider).get(url).status_code == 404


def test_the_api_lists_activity_newest_first(viewer_client, outsider_client, project, experiment, enqueue_calls):
    experiment.start(by=project.memberships.get(role="editor").user)
    body = viewer_client.get(f"/api/projects/{project.pk}/activity/").json()
    assert body["count"] == 3  # the dataset added, the experiment created, then started
    first = body["results"][0]
    assert {k: first[k] for k in ("user", "verb", "summary", "target_type", "target_id", "url")} == {
        "user": "eddie", "verb": "experiment.started", "summary": f"started experiment {experiment.name}",
        "target_type": "experiment", "target_id": experiment.pk, "url": f"/experiments/{experiment.pk}/",
    }  # fmt: skip
    assert outsider_client.get(f"/api/projects/{project.pk}/activity/").status_code == 404


# Comments ------------------------------------------------------------------------------------------
def test_viewers_comment_on_experiments_and_trials_in_the_pages(login, viewer, experiment, trial_factory, project):
    trial = trial_factory(experiment)
    client = login(viewer)
    response = client.post(reverse("experiment-comment", args=[experiment.pk]), {"body": "Why is depth 2 best?"})
    assert response["Location"] == reverse("experiment-detail", args=[experiment.pk]) + "#comments"
    client.post(reverse("trial-comment", args=[trial.pk]), {"body": "This one\nlooks overfit."})
    html = client.get(reverse("experiment-detail", args=[experiment.pk])).content.decode()
    assert "Why is depth 2 best?" in html and "looks overfit." in html
    assert f"trial #{trial.number}" in html  # the trial's comment is labelled on the experiment page
    trial_html = client.get(reverse("trial-detail", args=[trial.pk])).content.decode()
    assert "This one<br>looks overfit." in trial_html and "Why is depth 2 best?" not in trial_html
    assert verbs(project)[-2:] == ["vera comment.posted", "vera comment.posted"]
    assert last_activity(project).target_url == reverse("trial-detail", args=[trial.pk])


def test_it_refuses_an_empty_comment_and_outsiders(login, viewer, outsider, experiment):
    response = login(viewer).post(reverse("experiment-comment", args=[experiment.pk]), {"body": "   "}, follow=True)
    assert "Comment not posted: This field is required." in response.content.decode()
    assert login(outsider).post(reverse("experiment-comment", args=[experiment.pk]), {"body": "hi"}).status_code == 404
    assert not Comment.objects.exists()


def test_only_the_author_or_an_owner_deletes_a_comment_in_the_pages(login, owner, editor, viewer, outsider,
                                                                    experiment):  # fmt: skip
    first = Comment.post(viewer, experiment, "first")
    second = Comment.post(viewer, experiment, "second")
    page = reverse("experiment-detail", args=[experiment.pk])
    assert reverse("comment-delete", args=[first.pk]) not in login(editor).get(page).content.decode()
    assert login(editor).post(reverse("comment-delete", args=[first.pk])).status_code == 403
    assert login(outsider).post(reverse("comment-delete", args=[first.pk])).status_code == 404
    assert reverse("comment-delete", args=[first.pk]) in login(viewer).get(page).content.decode()
    assert login(viewer).post(reverse("comment-delete", args=[first.pk])).status_code == 302
    assert login(owner).post(reverse("comment-delete", args=[second.pk])).status_code == 302
    assert not Comment.objects.exists()


def test_the_api_creates_lists_and_filters_comments(viewer_client, outsider_client, experiment, trial_factory):
    trial = trial_factory(experiment)
    response = viewer_client.post("/api/comments/", {"experiment": experiment.pk, "body": " Looks good "}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("experiment", "trial", "author", "body", "can_delete")} == {
        "experiment": experiment.pk, "trial": None, "author": "vera", "body": "Looks good", "can_delete": True,
    }  # fmt: skip
    response = viewer_client.post("/api/comments/", {"trial": trial.pk, "body": "on a trial"}, format="json")
    assert response.status_code == 201 and response.json()["experiment"] == experiment.pk

    listed = viewer_client.get(f"/api/comments/?experiment={experiment.pk}").json()
    assert [c["body"] for c in listed["results"]] == ["Looks good", "on a trial"]
    assert [c["body"] for c in viewer_client.get(f"/api/comments/?trial={trial.pk}").json()["results"]] == ["on a trial"]
    own = viewer_client.get(f"/api/comments/?experiment={experiment.pk}&trial=none").json()["results"]
    assert [c["body"] for c in own] == ["Looks good"]
    assert viewer_client.get("/api/comments/?trial=abc").status_code == 400

    assert outsider_client.get(f"/api/comments/?experiment={experiment.pk}").json()["count"] == 0
    response = outsider_client.post("/api/comments/", {"experiment": experiment.pk, "body": "hi"}, format="json")
    assert response.status_code == 400 and "experiment" in response.json()


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"body": "x"}, "experiment", "give the experiment (or the trial) to comment on"),
        ({"body": ""}, "body", "This field may not be blank."),
        ({"body": "x" * 5001}, "body", "Ensure this field has no more than 5000 characters."),
    ],
)
def test_the_api_says_what_is_wrong_with_a_comment(viewer_client, experiment, payload, field, message):
    payload = {"experiment": experiment.pk, **payload} if field != "experiment" else payload
    response = viewer_client.post("/api/comments/", payload, format="json")
    assert response.status_code == 400
    assert response.json()[field] == [message]


def test_the_api_refuses_a_trial_of_another_experiment(viewer_client, experiment_factory, trial_factory):
    first, second = experiment_factory(), experiment_factory()
    trial = trial_factory(second)
    response = viewer_client.post("/api/comments/", {"experiment": first.pk, "trial": trial.pk, "body": "x"},
                                  format="json")  # fmt: skip
    assert response.status_code == 400
    assert response.json() == {"trial": [f"trial {trial.pk} is not a trial of experiment {first.pk}"]}


def test_the_api_lets_the_author_or_an_owner_delete(owner_client, editor_client, viewer_client, outsider_client,
                                                    viewer, experiment):  # fmt: skip
    first, second = Comment.post(viewer, experiment, "first"), Comment.post(viewer, experiment, "second")
    assert editor_client.get(f"/api/comments/{first.pk}/").json()["can_delete"] is False
    assert editor_client.delete(f"/api/comments/{first.pk}/").status_code == 403
    assert outsider_client.delete(f"/api/comments/{first.pk}/").status_code == 404
    assert viewer_client.delete(f"/api/comments/{first.pk}/").status_code == 204
    assert owner_client.get(f"/api/comments/{second.pk}/").json()["can_delete"] is True
    assert owner_client.delete(f"/api/comments/{second.pk}/").status_code == 204
    assert not Comment.objects.exists()


def test_comments_go_with_their_experiment(viewer, experiment):
    Comment.post(viewer, experiment, "bye")
    Experiment.objects.filter(pk=experiment.pk).delete()
    assert not Comment.objects.exists()
    assert Project.objects.get(pk=experiment.project_id).activity.filter(verb=ActivityVerb.COMMENT_POSTED).exists()
