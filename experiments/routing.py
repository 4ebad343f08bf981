"""(being written)"""
websocket_urlpatterns = []
