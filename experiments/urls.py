from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from . import views, views_compare, views_datasets, views_team

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.project_list, name="project-list"),
    path("projects/new/", views.project_create, name="project-create"),
    path("projects/<int:pk>/", views.project_detail, name="project-detail"),
    path("projects/<int:pk>/experiments/new/", views.experiment_new, name="experiment-new"),
    path("experiments/<int:pk>/", views.experiment_detail, name="experiment-detail"),
    # Compare and clone (views_compare.py); clone/ before the catch-all <action>/ below.
    path("projects/<int:pk>/compare/", views_compare.experiment_compare, name="experiment-compare"),
    path("experiments/<int:pk>/clone/", views_compare.experiment_clone, name="experiment-clone"),
    # Comments (views_team.py); before the catch-all <action>/ below.
    path("experiments/<int:pk>/comments/", views_team.experiment_comment, name="experiment-comment"),
    path("experiments/<int:pk>/<str:action>/", views.experiment_action, name="experiment-action"),
    path("trials/<int:pk>/", views.trial_detail, name="trial-detail"),
    # Accounts and teams (views_team.py).
    path("signup/", views_team.signup, name="signup"),
    # Own template names: the admin's password pages keep theirs (registration/password_change_form.html).
    path("account/password/", auth_views.PasswordChangeView.as_view(
        template_name="registration/password_change.html", success_url=reverse_lazy("password-change-done"),
    ), name="password-change"),  # fmt: skip
    path("account/password/done/", auth_views.PasswordChangeDoneView.as_view(
        template_name="registration/password_changed.html"), name="password-change-done"),  # fmt: skip
    path("projects/<int:pk>/members/", views_team.project_members, name="project-members"),
    path("projects/<int:pk>/members/<str:username>/role/", views_team.member_role, name="project-member-role"),
    path("projects/<int:pk>/members/<str:username>/remove/", views_team.member_remove, name="project-member-remove"),
    path("projects/<int:pk>/activity/", views_team.project_activity, name="project-activity"),
    path("trials/<int:pk>/comments/", views_team.trial_comment, name="trial-comment"),
    # Datasets (views_datasets.py).
    path("projects/<int:pk>/datasets/new/", views_datasets.dataset_new, name="dataset-new"),
    path("datasets/<int:pk>/", views_datasets.dataset_detail, name="dataset-detail"),
    path("datasets/<int:pk>/delete/", views_datasets.dataset_delete, name="dataset-delete"),
    path("comments/<int:pk>/delete/", views_team.comment_delete, name="comment-delete"),
]
