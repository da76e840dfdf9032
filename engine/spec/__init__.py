"""Pydantic models of the YAML language: the single source of `schema.json`."""

from .bot import BOT_NAME_PATTERN, Bot
from .input import AttachmentRules, ErrorType, InputRules
from .poe_settings import ParameterControls, PoeSettings
from .routes import ErrorAction, ErrorRoute, ReplyRoute, Route
from .tests import Expect, TestCase, Turn

__all__ = [
    "BOT_NAME_PATTERN",
    "AttachmentRules",
    "Bot",
    "ErrorAction",
    "ErrorRoute",
    "ErrorType",
    "Expect",
    "InputRules",
    "ParameterControls",
    "PoeSettings",
    "ReplyRoute",
    "Route",
    "TestCase",
    "Turn",
]
