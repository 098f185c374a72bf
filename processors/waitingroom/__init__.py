"""Virtual waiting room: settings, the room logic, tokens, and its store (Redis behind an interface)."""
from .service import RoomError, WaitingRoomService
from .settings import RoomSettings, SettingsError, parse_room_settings
from .store import RoomStore
from .tokens import KeyRing, TokenError, verify_with_jwks

__all__ = ["RoomError", "WaitingRoomService", "RoomSettings", "SettingsError", "parse_room_settings",
           "RoomStore", "KeyRing", "TokenError", "verify_with_jwks"]
