"""Domain verbs on the models: state transitions, leases, scoping."""

from __future__ import annotations

import uuid

import pytest

from experiments.choices import ExperimentStatus, Role, TrialState
from experiments.models import Dataset, Experiment, Membership, Project, StateError, Trial

pytestmark = pytest.mark.django_db


def test_it_makes_the_creator_owner(owner):
    project = Project.create_for(owner, "Audio")
    assert project.role_of(owner) == Role.OWNER
    assert project.allows(owner, Role.EDITOR)


def test_it_ranks_roles(project, editor, viewer, outsider):
    assert project.allows(editor, Role.EDITOR)
    assert not project.allows(editor, Role.OWNER)
    assert project.allows(viewer, Role.VIEWER)
    assert not project.allows(viewer, Role.EDITOR)
    assert not project.allows(outsider, Role.VIEWER)


def test_it_scopes_querysets_by_membership(project, outsider, outsider_project, viewer, experiment_factory,
                                           trial_factory, django_user_model):  # fmt: skip
    from django.contrib.auth.models import AnonymousUser

    mine = experiment_factory()
    trial_factory(mine)
    Dataset.objects.create(project=outsider_project, name="theirs", source="builtin", builtin_name="iris")

    assert list(Project.objects.for_user(viewer)) == [project]
    assert list(Experiment.objects.for_user(viewer)) == [mine]
    assert Trial.objects.for_user(viewer).count() == 1
    assert list(Dataset.objects.for_user(outsider).values_list("name", flat=True)) == ["theirs"]
    assert not Experiment.objects.for_user(outsider).exists()
    assert not Trial.objects.for_user(outsider).exists()
    assert not Project.objects.for_user(AnonymousUser()).exists()


def test_it_does_not_duplicate_rows_for_users_in_several_projects(viewer, project, experiment_factory, owner):
    other = Project.create_for(owner, "Second")
    Membership.objects.create(project=other, user=viewer, role=Role.VIEWER)
    experiment_factory()
    assert Experiment.objects.for_user(viewer).count() == 1
    assert Project.objects.for_user(viewer).count() == 2


def test_it_starts_a_draft_once(experiment, enqueue_calls, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        experiment.start()
    assert experiment.status == ExperimentStatus.QUEUED
    assert experiment.started_at is not None
    assert enqueue_calls == [experiment.pk]
    with pytest.raises(StateError):
        experiment.start()


def test_it_pauses_and_resumes(experiment, enqueue_calls, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        experiment.start()
        experiment.pause()
        assert experiment.status == ExperimentStatus.PAUSED
        experiment.resume()
    assert experiment.status == ExperimentStatus.QUEUED
    assert enqueue_calls == [experiment.pk, experiment.pk]


def test_it_refuses_to_resume_a_draft(experiment):
    with pytest.raises(StateError):
        experiment.resume()
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.DRAFT


def test_it_cancels_queued_trials_but_not_finished_ones(experiment, trial_factory):
    queued = trial_factory(experiment)
    running = trial_factory(experiment, state=TrialState.RUNNING)
    done = trial_factory(experiment, state=TrialState.COMPLETED, objective=0.9)
    experiment.start()
    experiment.cancel()
    assert experiment.status == ExperimentStatus.CANCELLED
    assert experiment.finished_at is not None
    states = dict(experiment.trials.values_list("pk", "state"))
    # A running trial stops itself at its next epoch when it sees the experiment's status.
    assert states == {queued.pk: TrialState.CANCELLED, running.pk: TrialState.RUNNING, done.pk: TrialState.COMPLETED}
    with pytest.raises(StateError):
        experiment.cancel()


def test_it_finishes_only_once(experiment):
    experiment.start()
    assert experiment.finish(ExperimentStatus.COMPLETED, "budget spent")
    assert not experiment.finish(ExperimentStatus.FAILED, "late duplicate")
    experiment.refresh_from_db()
    assert (experiment.status, experiment.status_message) == (ExperimentStatus.COMPLETED, "budget spent")


def test_it_lets_only_one_claim_win(experiment, trial_factory):
    trial = trial_factory(experiment)
    duplicate = Trial.objects.get(pk=trial.pk)  # the same message delivered twice
    token = trial.claim("worker-a")
    assert token is not None
    assert duplicate.claim("worker-b") is None
    trial.refresh_from_db()
    assert (trial.state, trial.attempt, trial.worker, trial.lease_token) == (TrialState.RUNNING, 1, "worker-a", token)


def test_it_drops_a_result_from_a_stale_lease(experiment, trial_factory):
    trial = trial_factory(experiment)
    stale_token = trial.claim("worker-a")
    trial.requeue_or_fail(max_attempts=3, reason="worker-a stopped heartbeating")
    fresh_token = trial.claim("worker-b")

    late = Trial.objects.get(pk=trial.pk)
    assert not late.complete(stale_token, state=TrialState.COMPLETED, objective=0.1, metrics={}, constraint_values={})
    assert not late.heartbeat(stale_token)
    assert trial.heartbeat(fresh_token)
    assert trial.complete(fresh_token, state=TrialState.COMPLETED, objective=0.8, metrics={"val_acc": 0.8},
                          constraint_values={}, duration_s=1.5)  # fmt: skip
    trial.refresh_from_db()
    assert (trial.state, trial.objective, trial.attempt, trial.lease_token) == (TrialState.COMPLETED, 0.8, 2, None)


def test_it_requeues_a_dead_trial_until_attempts_run_out(experiment, trial_factory):
    trial = trial_factory(experiment)
    for attempt in (1, 2):
        assert trial.claim(f"worker-{attempt}") is not None
        assert trial.requeue_or_fail(max_attempts=3, reason="lost its worker") == TrialState.QUEUED
        assert trial.lease_token is None
    assert trial.claim("worker-3") is not None
    assert trial.requeue_or_fail(max_attempts=3, reason="lost its worker") == TrialState.FAILED
    assert trial.attempt == 3
    assert "gave up after 3 attempts" in trial.error
    assert trial.finished_at is not None


def test_it_finds_stale_trials(experiment, trial_factory):
    from datetime import timedelta

    from django.utils import timezone

    fresh = trial_factory(experiment, state=TrialState.RUNNING, heartbeat_at=timezone.now(), lease_token=uuid.uuid4())
    old = trial_factory(experiment, state=TrialState.RUNNING, lease_token=uuid.uuid4(),
                        heartbeat_at=timezone.now() - timedelta(seconds=120))  # fmt: skip
    assert list(Trial.objects.stale(60)) == [old]
    assert fresh not in Trial.objects.stale(60)


def test_it_picks_the_best_trial(experiment, trial_factory):
    trial_factory(experiment, state=TrialState.COMPLETED, objective=0.7)
    first_best = trial_factory(experiment, state=TrialState.COMPLETED, objective=0.9)
    trial_factory(experiment, state=TrialState.COMPLETED, objective=0.9)  # a tie goes to the earlier trial
    trial_factory(experiment, state=TrialState.PRUNED, objective=0.99)  # pruned: not a finished score
    trial_factory(experiment, state=TrialState.COMPLETED, objective=None)
    assert experiment.best_trial() == first_best


def test_it_summarises_trials_of_many_experiments_in_two_queries(experiment_factory, trial_factory,
                                                                  django_assert_num_queries):  # fmt: skip
    a, b, empty = experiment_factory(), experiment_factory(), experiment_factory()
    trial_factory(a, state=TrialState.COMPLETED, objective=0.5)
    best_a = trial_factory(a, state=TrialState.COMPLETED, objective=0.6)
    trial_factory(a, state=TrialState.FAILED)
    trial_factory(b, state=TrialState.RUNNING)

    with django_assert_num_queries(2):
        Experiment.attach_trial_summaries([a, b, empty])
    assert a.trial_counts == {"completed": 2, "failed": 1}
    assert a.best == best_a
    assert (b.trial_counts, b.best) == ({"running": 1}, None)
    assert (empty.trial_counts, empty.best) == ({}, None)
