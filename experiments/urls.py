from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from .views import architectures, compare, datasets, experiments, projects, team

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", projects.project_list, name="project-list"),
    path("projects/new/", projects.project_create, name="project-create"),
    path("projects/<int:pk>/", projects.project_detail, name="project-detail"),
    path("projects/<int:pk>/experiments/new/", experiments.experiment_new, name="experiment-new"),
    path("experiments/<int:pk>/", experiments.experiment_detail, name="experiment-detail"),
    # Compare and clone (compare.py); clone/ before the catch-all <action>/ below.
    path("projects/<int:pk>/compare/", compare.experiment_compare, name="experiment-compare"),
    path("experiments/<int:pk>/clone/", compare.experiment_clone, name="experiment-clone"),
    # Comments (team.py); before the catch-all <action>/ below.
    path("experiments/<int:pk>/comments/", team.experiment_comment, name="experiment-comment"),
    # Rename, delete (experiments.py) and the trial diff (architectures.py); before the catch-all too.
    path("experiments/<int:pk>/rename/", experiments.experiment_rename, name="experiment-rename"),
    path("experiments/<int:pk>/delete/", experiments.experiment_delete, name="experiment-delete"),
    path("experiments/<int:pk>/diff/", architectures.trial_diff, name="trial-diff"),
    path("experiments/<int:pk>/<str:action>/", experiments.experiment_action, name="experiment-action"),
    path("trials/<int:pk>/", experiments.trial_detail, name="trial-detail"),
    path("trials/<int:pk>/arch.svg", architectures.trial_arch_svg, name="trial-arch"),
    # Accounts and teams (team.py).
    path("signup/", team.signup, name="signup"),
    # Own template names: the admin's password pages keep theirs (registration/password_change_form.html).
    path("account/password/", auth_views.PasswordChangeView.as_view(
        template_name="registration/password_change.html", success_url=reverse_lazy("password-change-done"),
    ), name="password-change"),  # fmt: skip
    path("account/password/done/", auth_views.PasswordChangeDoneView.as_view(
        template_name="registration/password_changed.html"), name="password-change-done"),  # fmt: skip
    path("projects/<int:pk>/members/", team.project_members, name="project-members"),
    path("projects/<int:pk>/members/<str:username>/role/", team.member_role, name="project-member-role"),
    path("projects/<int:pk>/members/<str:username>/remove/", team.member_remove, name="project-member-remove"),
    path("projects/<int:pk>/activity/", team.project_activity, name="project-activity"),
    path("trials/<int:pk>/comments/", team.trial_comment, name="trial-comment"),
    # Datasets (datasets.py).
    path("projects/<int:pk>/datasets/new/", datasets.dataset_new, name="dataset-new"),
    path("datasets/<int:pk>/", datasets.dataset_detail, name="dataset-detail"),
    path("datasets/<int:pk>/delete/", datasets.dataset_delete, name="dataset-delete"),
    path("datasets/<int:pk>/rename/", datasets.dataset_rename, name="dataset-rename"),
    path("comments/<int:pk>/delete/", team.comment_delete, name="comment-delete"),
]
