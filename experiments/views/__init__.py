"""HTML pages. Each view fetches through `for_user` (a non-member gets 404), checks the role with
Project.require_role (403), calls at most one verb, and renders or redirects:

    projects     the project list, a new project, a project's page
    experiments  a new experiment, an experiment's page and its buttons, a trial's page
    compare      experiments side by side, and "clone and edit"
    team         sign-up, members, the activity log, comments
    datasets     upload (choose -> preview -> save), a dataset's page, deletion
"""
