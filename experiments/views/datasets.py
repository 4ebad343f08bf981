"""Dataset pages: upload (choose a file -> preview -> pick the target / image size -> save), a
dataset's page (shape, class balance, samples, the experiments using it) and its deletion.

The upload page works without JavaScript: each step is a form POST, and the preview is rendered
here from the same uploads.build_preview the API answers with. Saving goes through the API's
DatasetSerializer, so the page and the API accept and refuse exactly the same files.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import ProtectedError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from .. import uploads
from ..api.serializers import DatasetSerializer
from ..choices import DatasetSource, Role, role_at_least
from ..forms import RenameForm
from ..models import Dataset, Project

GRAYSCALE_CHOICES = {"": None, "true": True, "false": False}


def _messages(errors: dict) -> list[str]:
    """Serializer/UploadError errors as lines; the structured `error` copy is left out."""
    lines = []
    for field, value in errors.items():
        if field == "error":
            continue
        for message in value if isinstance(value, list) else [value]:
            lines.append(str(message) if field in ("file", "options", "upload_token", "source") else f"{field}: {message}")
    return lines


def _choose(request, project, *, errors=(), name: str = "", status: int = 200):
    context = {
        "project": project,
        "step": "choose",
        "errors": list(errors),
        "name": name,
        "limit_bytes": settings.UPLOAD_MAX_BYTES,
        "page": {"limitBytes": settings.UPLOAD_MAX_BYTES, "suffixes": uploads.SUFFIX_SOURCES},
    }
    return render(request, "experiments/dataset_new.html", context, status=status)


@csrf_exempt
@login_required
def dataset_new(request, pk: int):
    """The size limit has to be in place before anything reads the body, and the CSRF check reads
    it (it looks for the token in the form), so this view is exempt and the inner one protected."""
    project = get_object_or_404(Project.objects.for_user(request.user), pk=pk)
    project.require_role(request.user, Role.EDITOR)
    if request.method == "POST":
        uploads.limit_upload_size(request)
        try:
            request.POST  # parsed here, under the limit  # noqa: B018
        except uploads.UploadTooLarge as exc:
            return _choose(request, project, errors=[exc.message], status=413)
    return _dataset_new(request, project)


def _form_options(form, source: str) -> dict:
    if source == DatasetSource.CSV:
        return {"target": form.get("target") or None, "exclude": form.getlist("exclude")}
    if source == DatasetSource.ZIP:
        size = form.get("image_size", "").strip()
        return {
            "image_size": int(size) if size.isdigit() else (size or None),
            "grayscale": GRAYSCALE_CHOICES.get(form.get("grayscale", "")),
        }
    return {}


@csrf_protect
def _dataset_new(request, project):
    if request.method != "POST":
        return _choose(request, project)
    form, upload = request.POST, request.FILES.get("file")
    token, name = form.get("upload_token", ""), form.get("name", "").strip()
    if upload is None and not token:
        return _choose(request, project, errors=["Choose a file to upload."], name=name)
    try:
        staged = uploads.staged_upload(user=request.user, project=project, source=form.get("source") or None,
                                       file=upload, token=token or None)  # fmt: skip
    except uploads.UploadError as exc:
        return _choose(request, project, errors=_messages(exc.as_dict()), name=name)
    options = _form_options(form, staged.source) if upload is None else {}

    if upload is None and form.get("action") == "save":
        data = {"project": project.pk, "name": name, "source": staged.source, "upload_token": token,
                "options": options}  # fmt: skip
        if not name:
            del data["name"]
        serializer = DatasetSerializer(data=data, context={"request": request})
        if serializer.is_valid():
            dataset = serializer.save()
            messages.success(request, f"Dataset “{dataset.name}” saved: {dataset.num_rows} rows, "
                                      f"{dataset.num_classes} classes.")  # fmt: skip
            return redirect("dataset-detail", pk=dataset.pk)
        # A refused save deletes the staged file (nothing of a rejected upload is kept).
        return _choose(request, project, errors=_messages(serializer.errors), name=name)

    errors = []
    try:
        preview = uploads.build_preview(staged, options)
    except uploads.UploadError as exc:
        if staged.fresh or exc.field != "options":
            return _choose(request, project, errors=_messages(exc.as_dict()), name=name)
        # An option that does not work (say, image size 1000): show the file with the defaults.
        errors, preview = _messages(exc.as_dict()), uploads.build_preview(staged, {})
    return render(request, "experiments/dataset_new.html", _preview_context(project, preview, name, errors, form))


def _preview_context(project, preview: dict, name: str, errors: list, form) -> dict:
    options, table = preview["options"], preview["csv"]
    columns = []
    if table:
        excluded = set(options.get("exclude", []))
        columns = [
            {"name": c, "kind": table["kinds"][c], "missing": table["missing"][c], "distinct": table["distinct"][c],
             "excluded": c in excluded, "target": c == options.get("target")}
            for c in table["columns"]
        ]  # fmt: skip
    dataset = preview["dataset"]
    return {
        "project": project,
        "step": "preview",
        "errors": errors,
        "preview": preview,
        "dataset": dataset,
        "columns": columns,
        "name": name or uploads.default_name(preview["file"]),
        "source_label": DatasetSource(preview["source"]).label,
        "grayscale": {True: "true", False: "false"}.get(options.get("grayscale"), ""),
        "page": {"classes": dataset["classes"] if dataset else []},
    }


@login_required
def dataset_detail(request, pk: int):
    dataset = get_object_or_404(Dataset.objects.for_user(request.user).select_related("project", "created_by"), pk=pk)
    project = dataset.project
    role = project.role_of(request.user)
    experiments = list(dataset.experiments.select_related("created_by").order_by("-created_at"))
    total = sum(dataset.class_counts) or 1
    classes = [
        {"name": name, "count": count, "share": 100 * count / total}
        for name, count in zip(dataset.class_names, dataset.class_counts, strict=False)
    ]
    counts = [c for c in dataset.class_counts if c]
    context = {
        "dataset": dataset,
        "project": project,
        "role": role,
        "can_edit": role_at_least(role, Role.EDITOR),
        "experiments": experiments,
        "classes": classes,
        "imbalance": round(max(counts) / min(counts), 2) if counts else None,
        "file_name": dataset.file.name.rsplit("/", 1)[-1] if dataset.file else "",
        "page": {
            "classes": [{"name": c["name"], "count": c["count"]} for c in classes],
            "samplesUrl": reverse("api:dataset-samples", args=[dataset.pk]),
            "kind": dataset.kind,
        },
    }
    return render(request, "experiments/dataset_detail.html", context)


@login_required
@require_POST
def dataset_delete(request, pk: int):
    dataset = get_object_or_404(Dataset.objects.for_user(request.user).select_related("project"), pk=pk)
    dataset.project.require_role(request.user, Role.EDITOR)
    try:
        uploads.delete_dataset(dataset, request.user)
    except ProtectedError:
        users = list(dataset.experiments.order_by("name").values_list("name", flat=True))
        shown = ", ".join(f"“{n}”" for n in users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        messages.error(request, f"“{dataset.name}” can not be deleted: {len(users)} experiment"
                                f"{'s use' if len(users) != 1 else ' uses'} it ({shown}). Delete those first.")  # fmt: skip
        return redirect("dataset-detail", pk=pk)
    messages.success(request, f"Dataset “{dataset.name}” deleted.")
    return redirect("project-detail", pk=dataset.project_id)


@login_required
@require_POST
def dataset_rename(request, pk: int):
    dataset = get_object_or_404(Dataset.objects.for_user(request.user).select_related("project"), pk=pk)
    dataset.project.require_role(request.user, Role.EDITOR)
    RenameForm.submit(request, lambda name: dataset.rename(name, by=request.user))
    return redirect("dataset-detail", pk=pk)
