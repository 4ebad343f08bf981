"""HTTP + websocket entry point (uvicorn serves it: `manage.py serve`, run by `manage.py up`)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nasweb.settings")
django_asgi_app = get_asgi_application()  # must run before importing consumers (app registry)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from experiments.live.routing import websocket_urlpatterns  # noqa: E402
from nasweb.middleware import RequestBodyLimit  # noqa: E402
from nasweb.origin import SameOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Upload URLs: refuse a body over UPLOAD_MAX_BYTES on its declared length, or while its
        # chunks arrive, before Django spools it to a temporary file.
        "http": RequestBodyLimit(django_asgi_app),
        # Origin check first (scheme, host and port; nasweb/origin.py): a page on another site must
        # not ride the user's session cookie.
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
