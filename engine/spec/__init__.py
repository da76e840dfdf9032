"""Pydantic models of the YAML language: the single source of `schema.json`."""

from .bot import BOT_NAME_PATTERN, Bot
from .flows import AskStep, Escape, Step
from .input import AttachmentRules, ErrorType, InputRules
from .poe_settings import ParameterControls, PoeSettings
from .routes import ErrorAction, ErrorRoute, FlowRoute, ReplyRoute, Route
from .tests import Expect, TestCase, Turn

__all__ = [
    "BOT_NAME_PATTERN",
    "AskStep",
    "AttachmentRules",
    "Bot",
    "ErrorAction",
    "ErrorRoute",
    "ErrorType",
    "Escape",
    "Expect",
    "FlowRoute",
    "InputRules",
    "ParameterControls",
    "PoeSettings",
    "ReplyRoute",
    "Route",
    "Step",
    "TestCase",
    "Turn",
]
