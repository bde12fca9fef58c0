"""The wire under the client: python-socketio, python-engineio and websocket-client,
with the overrides that keep messages in order and make them fast.

Every upstream private name these modules use is in :mod:`.upstream`'s table;
``client/link.py`` is the one client module that uses this package.
"""

from .engineio import INLINE_PACKET_TYPES
from .socketio import SocketIOClient, seam_available
from .upstream import FAST_PATH

__all__ = ["FAST_PATH", "INLINE_PACKET_TYPES", "SocketIOClient", "seam_available"]
